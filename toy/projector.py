"""Train `dino-smollm2-llava`'s projector (LLaVA's first stage: DINOv2 and SmolLM2 frozen, projector only), with the
toy's scenes and fit loop: `python -m toy train-projector` writes the weights capture.real_parts commits and loads.

Data: synthetic-coco scenes drawn at 224 x 224 (so the processor's centre crop keeps every shape), each with a
caption instruction (`Describe the image.` or a Wei prompt) in SmolLM2's chat template and the scene's caption
as the answer, objects listed left to right ("a red circle and a blue square on a plain background.").

Two phases, both moving only the projector:
1. align (a deviation from LLaVA, for a compute budget of minutes on 2 CPU cores): every patch token regresses
   onto the LM's input embedding of what the patch shows, pixel-fraction weighted (" background", or half the
   shape word and half the colour word), as the toy's projector warm-up. It needs no pass through the LM;
2. caption (LLaVA stage 1): next-token cross-entropy on the answer tokens through the frozen LM.

The frozen tower's features (second-to-last layer, CLS dropped: what the model feeds its projector) are computed
once, one image at a time. torch runs deterministic kernels on a fixed thread count, so the same recipe gives the
same weights on the same kind of CPU. Held-out figures: caption loss and top-1 next-token accuracy on the answer
tokens (all of them, and the shape / colour words alone) of scenes drawn from another seed, before training
(a fresh projector), after the align phase and at the end.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from capture.datasets.synthetic_coco import CATEGORIES, COLOURS, draw_scene
from capture.prompts import CHAT, build_prompt
from capture.real_parts.assemble import IMAGE_PX, PATCH_PX, build_model
from toy.scenes import CAPTION_PROMPTS, Example, caption_of, patch_labels
from toy.train import fit  # AdamW, constant rate, rows drawn from `order`: the toy's loop

TRAIN_SEED = 1
HELD_OUT_SEED = 2
IGNORE = -100


@dataclass(frozen=True)
class ProjectorRecipe:
    """Everything a projector training depends on; recorded next to the committed weights."""

    n_train_scenes: int = 480
    n_held_out_scenes: int = 40
    align_steps: int = 300
    align_batch_size: int = 8  # scenes per step (x 256 patch tokens)
    align_learning_rate: float = 1e-3
    caption_steps: int = 100
    caption_batch_size: int = 4  # captions per step (one forward each, losses averaged)
    caption_learning_rate: float = 5e-4
    seed: int = 0
    threads: int = 1  # on 2 shared cores one thread ran 3-4x faster than two (OpenMP barriers under load)


# The short recipe whose result is pinned (projector.json, "smoke"): a test retrains it and compares bits.
SMOKE_RECIPE = ProjectorRecipe(n_train_scenes=6, n_held_out_scenes=0, align_steps=2, align_batch_size=2,
                               caption_steps=1, caption_batch_size=2)


@dataclass(frozen=True)
class Scene:
    """One training or held-out example: the image, its objects, the user's instruction and the caption."""

    image: Any
    objects: tuple
    question: str
    caption: str


def make_scenes(n: int, seed: int) -> list[Scene]:
    """`n` square synthetic scenes with an instruction and their left-to-right caption (same arguments, same scenes)."""
    rng = np.random.RandomState(seed)
    scenes = []
    for _ in range(n):
        image, objects = draw_scene(rng, IMAGE_PX, IMAGE_PX)
        question = CAPTION_PROMPTS[rng.randint(len(CAPTION_PROMPTS))]
        scenes.append(Scene(image, tuple(objects), question, caption_of(objects)))
    return scenes


def tower_features(model: Any, processor: Any, scenes: list[Scene]) -> torch.Tensor:
    """(scenes, 256, 384) frozen tower features, exactly as the model selects them for its projector."""
    config = model.config
    features = []
    with torch.no_grad():
        for scene in scenes:
            pixels = processor.image_processor(images=[scene.image], return_tensors="pt")["pixel_values"]
            hidden = model.model.vision_tower(pixels, output_hidden_states=True).hidden_states
            features.append(hidden[config.vision_feature_layer][0, 1:])
    if not features:
        return torch.empty(0, (IMAGE_PX // PATCH_PX) ** 2, config.vision_config.hidden_size)
    return torch.stack(features)


def patch_targets(model: Any, tokenizer: Any, scenes: list[Scene]) -> torch.Tensor:
    """(scenes, 256, 576) align targets: per patch, the input embeddings of " background", the shape word and the
    colour word, weighted by the fraction of the patch's pixels each covers (shape and colour words half each)."""
    embeddings = model.model.language_model.get_input_embeddings().weight.detach()
    words = [tokenizer.convert_tokens_to_ids(tokenizer.tokenize(f" {w}"))[0]
             for w in ("background", *CATEGORIES, *COLOURS)]
    labels = torch.stack([
        torch.from_numpy(patch_labels(Example("caption", s.image, s.objects, s.question, s.caption), IMAGE_PX, PATCH_PX))
        for s in scenes]).float()  # (scenes, patches, 2, 5)
    weights = torch.cat([labels[:, :, 0, :1], labels[:, :, 0, 1:] / 2, labels[:, :, 1, 1:] / 2], dim=-1)
    return weights @ embeddings[words]


@dataclass
class Caption:
    """One scene as LM inputs: token ids (seq,), labels (IGNORE outside the answer) and the image positions."""

    input_ids: torch.Tensor
    labels: torch.Tensor
    image_positions: torch.Tensor


def encode_caption(processor: Any, scene: Scene) -> Caption:
    """The chat prompt with the instruction, followed by the caption and `<|im_end|>`; loss on those tokens only."""
    tokenizer = processor.tokenizer
    prompt = build_prompt(processor, CHAT, scene.question, 1)
    answer = scene.caption + tokenizer.eos_token
    input_ids = processor(text=[prompt + answer], images=[[scene.image]], return_tensors="pt")["input_ids"][0]
    n_answer = len(tokenizer(answer, add_special_tokens=False)["input_ids"])
    labels = torch.full_like(input_ids, IGNORE)
    labels[-n_answer:] = input_ids[-n_answer:]
    image_token_id = tokenizer.convert_tokens_to_ids(processor.image_token)
    return Caption(input_ids, labels, torch.nonzero(input_ids == image_token_id)[:, 0])


def caption_logits(model: Any, caption: Caption, features: torch.Tensor) -> torch.Tensor:
    """Logits (answer tokens, vocab) at the positions that predict the answer: the model's forward with the
    projected `features` (256, 384) in place of the image tokens (the tower's output is precomputed)."""
    embeddings = model.model.language_model.get_input_embeddings()(caption.input_ids[None]).clone()
    embeddings[0, caption.image_positions] = model.model.multi_modal_projector(features)
    hidden = model.model.language_model(inputs_embeds=embeddings).last_hidden_state[0]
    predicting = torch.nonzero(caption.labels[1:] != IGNORE)[:, 0]  # position t predicts token t + 1
    return model.lm_head(hidden[predicting])


def answer_targets(caption: Caption) -> torch.Tensor:
    return caption.labels[1:][caption.labels[1:] != IGNORE]


def evaluate(model: Any, processor: Any, captions: list[Caption], features: torch.Tensor) -> dict[str, float]:
    """Teacher-forced held-out figures on the answer tokens: mean caption loss (nats per token, averaged per
    caption), top-1 accuracy over all answer tokens, and over the shape and colour words only."""
    tokenizer = processor.tokenizer
    content = {tokenizer.convert_tokens_to_ids(tokenizer.tokenize(f" {w}"))[0] for w in (*CATEGORIES, *COLOURS)}
    losses, hits, content_hits, n_content = [], [], [], 0
    with torch.no_grad():
        for caption, feature in zip(captions, features):
            logits, targets = caption_logits(model, caption, feature), answer_targets(caption)
            losses.append(torch.nn.functional.cross_entropy(logits, targets).item())
            correct = (logits.argmax(dim=-1) == targets).numpy()
            hits.extend(correct)
            is_content = np.isin(targets.numpy(), list(content))
            content_hits.extend(correct[is_content])
            n_content += int(is_content.sum())
    return {"n_captions": len(captions), "caption_loss": round(float(np.mean(losses)), 4),
            "token_accuracy": round(100 * float(np.mean(hits)), 2), "n_answer_tokens": len(hits),
            "content_word_accuracy": round(100 * float(np.mean(content_hits)), 2), "n_content_words": n_content}


def projector_state(model: Any) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone().contiguous() for k, v in model.model.multi_modal_projector.state_dict().items()}


def weights_sha256(state: dict[str, torch.Tensor]) -> str:
    """sha256 of the fp32 bytes of every tensor, in key order."""
    digest = hashlib.sha256()
    for key in sorted(state):
        digest.update(key.encode())
        digest.update(state[key].float().contiguous().numpy().tobytes())
    return digest.hexdigest()


def train(recipe: ProjectorRecipe, log: Callable[[str], None] = print) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Train a projector from a seeded fresh one: (its weights, a record of losses, held-out figures, timings)."""
    threads, deterministic = torch.get_num_threads(), torch.are_deterministic_algorithms_enabled()
    torch.set_num_threads(recipe.threads)
    torch.use_deterministic_algorithms(True)
    try:
        return _train(recipe, log)
    finally:
        torch.set_num_threads(threads)
        torch.use_deterministic_algorithms(deterministic)


def _train(recipe: ProjectorRecipe, log: Callable[[str], None]) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    seconds: dict[str, float] = {}
    started = time.perf_counter()
    model, processor = build_model(projector={}, seed=recipe.seed)
    for parameter in model.parameters():
        parameter.requires_grad_(False)
    seconds["build"] = time.perf_counter() - started

    started = time.perf_counter()
    train_scenes = make_scenes(recipe.n_train_scenes, TRAIN_SEED)
    held_out_scenes = make_scenes(recipe.n_held_out_scenes, HELD_OUT_SEED)
    train_features = tower_features(model, processor, train_scenes)
    held_out_features = tower_features(model, processor, held_out_scenes)
    targets = patch_targets(model, processor.tokenizer, train_scenes)
    train_captions = [encode_caption(processor, s) for s in train_scenes]
    held_out_captions = [encode_caption(processor, s) for s in held_out_scenes]
    seconds["features"] = time.perf_counter() - started
    log(f"tower features of {len(train_scenes)} + {len(held_out_scenes)} scenes: {seconds['features']:.0f} s")

    held_out: dict[str, Any] = {}
    seconds["evaluate"] = 0.0

    def held_out_figures(stage: str) -> None:
        """Held-out figures of the projector as it is now, timed into seconds["evaluate"]."""
        started = time.perf_counter()
        if held_out_captions:
            held_out[stage] = evaluate(model, processor, held_out_captions, held_out_features)
            log(f"held-out, {stage}: {held_out[stage]}")
        seconds["evaluate"] += time.perf_counter() - started

    held_out_figures("fresh")

    projector = model.model.multi_modal_projector
    parameters = list(projector.parameters())
    for parameter in parameters:
        parameter.requires_grad_(True)
    order = np.random.RandomState(recipe.seed)
    scale = model.model.language_model.get_input_embeddings().weight.detach().pow(2).sum(dim=-1).mean()

    def align_loss(rows: np.ndarray) -> torch.Tensor:
        return (projector(train_features[rows]) - targets[rows]).pow(2).sum(dim=-1).mean() / scale

    def caption_loss(rows: np.ndarray) -> torch.Tensor:
        losses = [torch.nn.functional.cross_entropy(caption_logits(model, train_captions[r], train_features[r]),
                                                    answer_targets(train_captions[r])) for r in rows]
        return torch.stack(losses).mean()

    started = time.perf_counter()
    history = fit("align", parameters, recipe.align_learning_rate, recipe.align_steps, len(train_scenes),
                  recipe.align_batch_size, align_loss, order, log, every=25)
    seconds["align"] = time.perf_counter() - started
    held_out_figures("aligned")
    started = time.perf_counter()
    history += fit("caption", parameters, recipe.caption_learning_rate, recipe.caption_steps, len(train_scenes),
                   recipe.caption_batch_size, caption_loss, order, log, every=1)
    seconds["caption"] = time.perf_counter() - started
    held_out_figures("trained")
    state = projector_state(model)
    return state, _record(state, history, held_out, seconds)


def _record(state: dict[str, torch.Tensor], history: list, held_out: dict, seconds: dict[str, float]) -> dict[str, Any]:
    """What a training recorded: losses, held-out figures, timings, and the weights' checksum with the CPU and torch
    that produced them (bit-exact reproduction holds on the same kind of CPU and version)."""
    return {"loss": history, "held_out": held_out, "seconds": {k: round(v, 1) for k, v in seconds.items()},
            "sha256": weights_sha256(state), "cpu_capability": torch.backends.cpu.get_cpu_capability(),
            "torch": torch.__version__}


def train_and_write(seed: int, out_dir: Path) -> None:
    """Train the full recipe and the smoke recipe; write projector.safetensors, projector-smoke.safetensors and
    projector.json (recipe, command, held-out figures, timings, checksums) into `out_dir`."""
    from safetensors.torch import save_file

    recipe = replace(ProjectorRecipe(), seed=seed)
    started = time.perf_counter()
    state, record = train(recipe)
    out_dir.mkdir(parents=True, exist_ok=True)
    save_file(state, out_dir / "projector.safetensors")
    smoke_state, smoke_record = train(replace(SMOKE_RECIPE, seed=seed), log=lambda line: None)
    save_file({k: v.to(torch.float16) for k, v in smoke_state.items()}, out_dir / "projector-smoke.safetensors")
    summary = {
        "command": f"python -m toy train-projector --seed {seed}",
        "recipe": asdict(recipe), "smoke_recipe": asdict(replace(SMOKE_RECIPE, seed=seed)),
        "total_seconds": round(time.perf_counter() - started, 1), **record,
        "smoke": {"sha256": smoke_record["sha256"], "cpu_capability": smoke_record["cpu_capability"],
                  "torch": smoke_record["torch"]},
    }
    (out_dir / "projector.json").write_text(json.dumps(summary, indent=1) + "\n")
    print(f"saved {out_dir / 'projector.safetensors'} ({summary['total_seconds']:.0f} s)")
