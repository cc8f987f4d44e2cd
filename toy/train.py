"""Deterministic training of the toy model on CPU, with the freezing schedules of the two recipes it mirrors.

Real VLMs start from a pretrained vision encoder (CLIP, SigLIP) and a pretrained language model. No such
checkpoint exists at toy size, so both are first pretrained here on the training scenes:
- the tower on dense labels, like a segmentation backbone: at every patch, which shape and which colour it shows
  (a temporary linear head). Image-level labels alone (CLIP-like) left shapes barely decodable from its features
  at this size, and image polling at chance;
- the language model on text alone: each example with its image replaced by the scene's caption, so it
  learns to answer from a description (copy it when asked to describe, check it when polled). Image polling is
  only learnt when this has been learnt first.
A short projector warm-up (`align_projector`) then maps each patch onto the word embeddings of what it shows, and
the VLM stages follow, on images:

- "projector" (Jung et al.): only the projector (and OneVision's image-newline vector) learns; the vision
  tower and the language model stay frozen as pretrained above;
- "projector-then-all" (LLaVA, the default): the projector alone first, then every weight;
- "all": every weight from the first step.

Loss is next-token cross-entropy on the answer tokens only. Everything random (initialisation, scenes,
batch order) is seeded, and torch runs deterministic kernels on a fixed thread count (restored afterwards), so
the same recipe gives the same weights on the same machine.
"""

from __future__ import annotations

import json
import platform
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from capture.datasets.synthetic_coco import CATEGORIES, COLOURS
from capture.device import cpu_info
from capture.paths import staged_directory
from toy import model as toy_model
from toy.batches import IGNORE, Encoded, collate, encode, encode_described
from toy.evaluate import evaluate
from toy.scenes import HELD_OUT_SEED, TRAIN_SEED, Example, corpus, make_examples, patch_labels

FREEZING = ("projector", "projector-then-all", "all")


@dataclass(frozen=True)
class TrainingRecipe:
    """What a toy build is trained with; recorded in its build file."""

    freeze: str = "projector-then-all"
    n_train_scenes: int = 6000
    n_held_out_scenes: int = 450
    batch_size: int = 32
    tower_steps: int = 1000  # vision-tower pretraining (batch `tower_batch_size`)
    tower_batch_size: int = 64
    tower_learning_rate: float = 3e-3
    language_steps: int = 300  # language-model pretraining on described scenes (batch `language_batch_size`)
    language_batch_size: int = 64
    language_learning_rate: float = 1e-3
    align_steps: int = 200  # projector warm-up: patches onto the word embeddings of what they show (batch 64)
    projector_steps: int = 250  # stage 1 of "projector-then-all"; every step of "projector"
    projector_learning_rate: float = 3e-3
    steps: int = 150  # every step of "all"; stage 2 of "projector-then-all"
    learning_rate: float = 3e-4  # all weights: low, so the LM keeps what the earlier stages taught it
    seed: int = 0
    threads: int = 2

    def stages(self) -> list[tuple[str, int]]:
        """(what trains, steps) in order."""
        if self.freeze == "projector":
            return [("projector", self.projector_steps + self.steps)]
        if self.freeze == "projector-then-all":
            return [("projector", self.projector_steps), ("all", self.steps)]
        if self.freeze == "all":
            return [("all", self.steps)]
        raise ValueError(f"unknown freezing {self.freeze!r} (choose from {', '.join(FREEZING)})")


def answer_loss(model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """Next-token cross-entropy averaged over each example's answer tokens, then over examples, so a one-token
    Yes / No counts as much as a twelve-token caption (a token mean would drown the polling signal)."""
    inputs = {key: value for key, value in batch.items() if key != "labels"}
    logits = model(**inputs).logits[:, :-1].float()
    targets = batch["labels"][:, 1:]
    per_token = torch.nn.functional.cross_entropy(logits.transpose(1, 2), targets, ignore_index=IGNORE, reduction="none")
    answered = (targets != IGNORE).float()
    return ((per_token * answered).sum(dim=1) / answered.sum(dim=1)).mean()


def trainable_parameters(model: torch.nn.Module, what: str) -> list[torch.nn.Parameter]:
    """Unfreeze what a stage trains ("projector": projector + image-newline vector; "language": the language model
    and its head; "all") and freeze the rest."""
    inner = model.model
    chosen = set()
    if what == "projector":
        chosen = {id(p) for p in inner.multi_modal_projector.parameters()} | {id(inner.image_newline)}
    if what == "language":
        chosen = {id(p) for p in [*inner.language_model.parameters(), *model.lm_head.parameters()]}
    for parameter in model.parameters():
        parameter.requires_grad_(what == "all" or id(parameter) in chosen)
    return [p for p in model.parameters() if p.requires_grad]


def base_view_labels(examples: list[Example]) -> torch.Tensor:
    """(examples, patches, 2, 5) `patch_labels` of each example's base view."""
    return torch.stack([torch.from_numpy(patch_labels(e, toy_model.TILE_PX, toy_model.PATCH_PX)).float()
                        for e in examples])


def fit(stage: str, parameters: list[torch.nn.Parameter], learning_rate: float, n_steps: int, n_items: int,
        batch_size: int, batch_loss: Any, order: np.random.RandomState, log: Any, every: int) -> list[dict[str, Any]]:
    """`n_steps` of AdamW (no weight decay, constant rate) on `batch_loss(rows)`, rows drawn from `n_items`;
    the loss is logged every `every` steps and at the last."""
    optimiser = torch.optim.AdamW(parameters, lr=learning_rate, weight_decay=0.0)
    history = []
    for step in range(n_steps):
        loss = batch_loss(order.randint(n_items, size=batch_size))
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        optimiser.step()
        if step % every == 0 or step == n_steps - 1:
            history.append({"step": step + 1, "stage": stage, "loss": round(loss.item(), 4)})
            log(f"{stage} step {step + 1:4d}: loss {loss.item():.3f}")
    return history


def pretrain_tower(model: torch.nn.Module, labels: torch.Tensor, pixels: torch.Tensor, recipe: TrainingRecipe,
                   order: np.random.RandomState, log: Any) -> list[dict[str, Any]]:
    """Train the vision tower on the base views `pixels` (examples, 3, px, px) to tell, at every patch, the shape
    and the colour it shows (`labels`: `base_view_labels`), through a temporary linear head that is dropped."""
    tower = model.model.vision_tower
    head = torch.nn.Linear(model.config.vision_config.hidden_size, labels.shape[2] * labels.shape[3])
    for parameter in model.parameters():
        parameter.requires_grad_(False)
    parameters = [*tower.parameters(), *head.parameters()]
    for parameter in parameters:
        parameter.requires_grad_(True)

    def batch_loss(rows: np.ndarray) -> torch.Tensor:
        logits = head(tower(pixels[rows]).last_hidden_state).unflatten(-1, labels.shape[2:])
        return -(labels[rows] * torch.log_softmax(logits, dim=-1)).sum(dim=-1).mean()  # soft-target cross-entropy

    return fit("tower", parameters, recipe.tower_learning_rate, recipe.tower_steps, len(pixels),
               recipe.tower_batch_size, batch_loss, order, log, every=200)


def align_projector(model: torch.nn.Module, tokenizer: Any, labels: torch.Tensor, pixels: torch.Tensor,
                    recipe: TrainingRecipe, order: np.random.RandomState, log: Any) -> list[dict[str, Any]]:
    """Warm the projector up (tower and LM frozen): each base-view patch token regresses onto the language model's
    input embeddings of what the patch shows, pixel-fraction weighted: " background", or half the shape word and
    half the colour word. Image tokens so start as word-like vectors at the text's scale, which the language model
    (pretrained on described scenes) can already compare with the question, instead of vectors a hundred times
    larger that its layers barely change (which flattened the logit lens across layers)."""
    inner = model.model
    embeddings = inner.language_model.get_input_embeddings().weight.detach()
    word = [tokenizer.convert_tokens_to_ids(tokenizer.tokenize(f" {w}"))[0]
            for w in ("background", *CATEGORIES, *COLOURS)]
    weights = torch.cat([labels[:, :, 0, :1], labels[:, :, 0, 1:] / 2, labels[:, :, 1, 1:] / 2], dim=-1)
    targets = weights @ embeddings[word]  # (examples, patches, hidden)
    scale = embeddings.pow(2).sum(dim=-1).mean()
    with torch.no_grad():
        features = torch.cat([inner.vision_tower(pixels[i:i + 256]).last_hidden_state for i in range(0, len(pixels), 256)])

    def batch_loss(rows: np.ndarray) -> torch.Tensor:
        return (inner.multi_modal_projector(features[rows]) - targets[rows]).pow(2).sum(dim=-1).mean() / scale

    return fit("align", trainable_parameters(model, "projector"), recipe.projector_learning_rate, recipe.align_steps,
               len(features), recipe.tower_batch_size, batch_loss, order, log, every=50)


def new_model(tokenizer: Any, seed: int) -> torch.nn.Module:
    from transformers import AutoModelForImageTextToText

    torch.manual_seed(seed)
    config = toy_model.build_config(tokenizer)
    return AutoModelForImageTextToText.from_config(config).float()


def next_token_stage(model: torch.nn.Module, stage: str, n_steps: int, items: list[Encoded], batch_size: int,
                     learning_rate: float, order: np.random.RandomState, pad_id: int, log: Any) -> list[dict[str, Any]]:
    """`n_steps` of `answer_loss` on batches drawn from `items`, training what `stage` names (AdamW, linear
    warm-up over a tenth of the steps, then cosine decay; gradients clipped at norm 1)."""
    parameters = trainable_parameters(model, stage)
    optimiser = torch.optim.AdamW(parameters, lr=learning_rate, weight_decay=0.0)
    warmup = max(1, n_steps // 10)
    schedule = torch.optim.lr_scheduler.SequentialLR(optimiser, [
        torch.optim.lr_scheduler.LinearLR(optimiser, start_factor=0.1, total_iters=warmup),
        torch.optim.lr_scheduler.CosineAnnealingLR(optimiser, T_max=max(1, n_steps - warmup)),
    ], milestones=[warmup])
    history = []
    for step in range(n_steps):
        batch = collate([items[i] for i in order.randint(len(items), size=batch_size)], pad_id)
        loss = answer_loss(model, batch)
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(parameters, 1.0)
        optimiser.step()
        schedule.step()
        if step % 20 == 0 or step == n_steps - 1:
            history.append({"step": step + 1, "stage": stage, "loss": round(loss.item(), 4)})
            log(f"{stage} step {step + 1:4d}: loss {loss.item():.3f}")
    return history


def train(recipe: TrainingRecipe, log: Any = print) -> tuple[torch.nn.Module, Any, list[dict[str, Any]]]:
    """Train a toy model from scratch: (model in eval mode, processor, loss log per 20 steps)."""
    threads, deterministic = torch.get_num_threads(), torch.are_deterministic_algorithms_enabled()
    torch.set_num_threads(recipe.threads)
    torch.use_deterministic_algorithms(True)
    try:
        return _train(recipe, log)
    finally:
        torch.set_num_threads(threads)
        torch.use_deterministic_algorithms(deterministic)


def _train(recipe: TrainingRecipe, log: Any) -> tuple[torch.nn.Module, Any, list[dict[str, Any]]]:
    train_examples = make_examples(recipe.n_train_scenes, TRAIN_SEED)
    tokenizer = toy_model.build_tokenizer(corpus(train_examples))
    model = new_model(tokenizer, recipe.seed)
    processor = toy_model.build_processor(tokenizer, model.config)
    encoded = [encode(processor, example) for example in train_examples]
    order = np.random.RandomState(recipe.seed)
    model.train()
    labels = base_view_labels(train_examples)
    base_views = torch.stack([item.pixel_values[0] for item in encoded])  # (examples, 3, px, px)
    history = pretrain_tower(model, labels, base_views, recipe, order, log)
    described = [encode_described(processor, e) for e in train_examples if e.task != "bbox"]
    history += next_token_stage(model, "language", recipe.language_steps, described, recipe.language_batch_size,
                                recipe.language_learning_rate, order, tokenizer.pad_token_id, log)
    history += align_projector(model, tokenizer, labels, base_views, recipe, order, log)
    # described scenes stay in the mix (a quarter), so the language model keeps what it learnt from text
    rehearsed = encoded + described[: len(encoded) // 3]
    for stage, n_steps in recipe.stages():
        learning_rate = recipe.projector_learning_rate if stage == "projector" else recipe.learning_rate
        history += next_token_stage(model, stage, n_steps, rehearsed, recipe.batch_size, learning_rate, order,
                                    tokenizer.pad_token_id, log)
    for parameter in model.parameters():
        parameter.requires_grad_(False)
    return model.eval(), processor, history


def train_and_save(out_dir: Path, recipe: TrainingRecipe, name: str = "toy-llava-ov", log: Any = print) -> Path:
    """Train, evaluate on held-out scenes, and save the model, processor and build record into `out_dir`
    (replaced whole, so an interrupted run never leaves a half-written model)."""
    started = time.perf_counter()
    model, processor, history = train(recipe, log)
    train_seconds = time.perf_counter() - started
    scores = evaluate(model, processor, make_examples(recipe.n_held_out_scenes, HELD_OUT_SEED))
    log("held-out: " + ", ".join(f"{k} {v:.1f}%" for k, v in scores.items() if k.endswith("accuracy")))
    with staged_directory(out_dir) as staging:
        model.config.dtype = torch.float32
        model.save_pretrained(staging)
        processor.save_pretrained(staging)
        record = {"name": name, "version": toy_model.TOY_VERSION, "recipe": asdict(recipe),
                  "train_seconds": round(train_seconds, 1), "trained_on": f"{platform.machine()}, {cpu_info().model}, "
                  f"torch {torch.__version__}", "held_out": scores, "loss": history}
        (staging / toy_model.BUILD_FILE).write_text(json.dumps(record, indent=1) + "\n")
    return out_dir


def is_current(record: dict[str, Any] | None, recipe: TrainingRecipe) -> bool:
    """Whether a build record is of this toy version and exactly this recipe (the key of a cached or pinned build)."""
    return (record is not None and record.get("version") == toy_model.TOY_VERSION
            and record.get("recipe") == json.loads(json.dumps(asdict(recipe))))


def ensure_toy_model(name: str) -> Path:
    """The directory of toy model `name` in the cache: a current cached build, else a copy of the build committed
    with the code (toy/pinned/, when its version and recipe are current), else trained here (an hour on 2 cores)."""
    out_dir = toy_model.toy_model_dir(name)
    recipe = TrainingRecipe()
    if is_current(toy_model.read_build(out_dir), recipe):
        return out_dir
    pinned = toy_model.pinned_build_dir(name)
    if is_current(toy_model.read_build(pinned), recipe):
        with staged_directory(out_dir) as staging:
            shutil.copytree(pinned, staging, dirs_exist_ok=True)
        return out_dir
    return train_and_save(out_dir, recipe, name=name)
