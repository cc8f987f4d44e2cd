"""`dino-smollm2-llava`: a LLaVA-1.5 (`LlavaForConditionalGeneration`) built from the converted parts.

- vision tower: DINOv2 ViT-S/14 at 224 px (16 x 16 = 256 image tokens), its position embedding resampled once from
  the 518-px checkpoint (`convert_dinov2.at_image_size`); features of its second-to-last layer (LLaVA-1.5's
  `vision_feature_layer=-2`), CLS dropped (`vision_feature_select_strategy="default"`);
- language model: SmolLM2-135M-Instruct, tied embeddings, its tokenizer and its chat template (extended to
  image items, which are placed where they occur in the message, each followed by a newline);
- image token: SmolLM2's unused special token `<empty_output>` (id 16) renamed `<image>`; no row is added, its
  embedding row is never read (image features replace it before the first layer);
- projector: LLaVA's 2-layer GELU MLP (384 -> 576 -> 576), trained here (`toy/projector.py`) and committed as
  `projector.safetensors` beside this module.

The model is saved in fp32 (the dequantised LM does not fit bf16 exactly) and loads like any released LLaVA
checkpoint: `--model <cache>/models/dino-smollm2-llava` works as well as the registered name.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import torch

from capture.errors import CaptureError
from capture.paths import cache_home, staged_directory
from capture.real_parts.convert_dinov2 import (
    DINOV2_VERSION,
    IMAGENET_MEAN,
    IMAGENET_STD,
    at_image_size,
    dinov2_config,
    ensure_dinov2,
)
from capture.real_parts.convert_smollm2 import SMOLLM2_VERSION, ensure_smollm2
from capture.registry import REAL_PARTS_MODELS

ASSEMBLY_VERSION = 1  # bump when the assembly changes: cached builds are rebuilt
BUILD_FILE = "real_parts_build.json"
IMAGE_PX = 224
PATCH_PX = 14
VISION_FEATURE_LAYER = -2
IMAGE_TOKEN = "<image>"
REUSED_TOKEN = "<empty_output>"  # SmolLM2's special token 16 (Jupyter notebooks' empty cell output), unused in chat
PROJECTOR_FILE = Path(__file__).with_name("projector.safetensors")
PROJECTOR_RECORD = Path(__file__).with_name("projector.json")
SYSTEM_PROMPT = "You are a helpful AI assistant named SmolLM, trained by Hugging Face"
# SmolLM2's own template, with content lists: images and texts in their order, each image followed by a newline.
CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{% if loop.first and messages[0]['role'] != 'system' %}"
    "{{ '<|im_start|>system\n" + SYSTEM_PROMPT + "<|im_end|>\n' }}{% endif %}"
    "{{ '<|im_start|>' + message['role'] + '\n' }}"
    "{% if message['content'] is string %}{{ message['content'] }}{% else %}"
    "{% for item in message['content'] %}{% if item['type'] == 'image' %}{{ '" + IMAGE_TOKEN + "\n' }}"
    "{% elif item['type'] == 'text' %}{{ item['text'] }}{% endif %}{% endfor %}{% endif %}"
    "{{ '<|im_end|>\n' }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)


def real_parts_model_dir(name: str) -> Path:
    return cache_home() / "models" / name


def build_tokenizer(smollm2: Path) -> Any:
    """SmolLM2's tokenizer with `<empty_output>` (id 16) renamed `<image>`: same ids for every other token."""
    from tokenizers import Tokenizer
    from transformers import PreTrainedTokenizerFast

    spec = json.loads(Tokenizer.from_file(str(smollm2 / "tokenizer.json")).to_str())
    reused = [t for t in spec["added_tokens"] if t["content"] == REUSED_TOKEN]
    if len(reused) != 1 or spec["model"]["vocab"].get(REUSED_TOKEN) != reused[0]["id"]:
        raise RuntimeError(f"SmolLM2's tokenizer has no single special token {REUSED_TOKEN} to reuse")
    reused[0]["content"] = IMAGE_TOKEN
    spec["model"]["vocab"][IMAGE_TOKEN] = spec["model"]["vocab"].pop(REUSED_TOKEN)
    config = json.loads((smollm2 / "tokenizer_config.json").read_text())
    return PreTrainedTokenizerFast(
        tokenizer_object=Tokenizer.from_str(json.dumps(spec)), bos_token=config["bos_token"],
        eos_token=config["eos_token"], pad_token=config["pad_token"], unk_token=config["unk_token"],
        chat_template=CHAT_TEMPLATE, extra_special_tokens={"image_token": IMAGE_TOKEN},
    )


def build_processor(tokenizer: Any) -> Any:
    """LLaVA-1.5's processor: shortest edge to 224 px (bicubic, as DINOv2), centre crop 224, ImageNet mean / std;
    256 `<image>` tokens per image (the tower's CLS output is dropped, hence `num_additional_image_tokens=1`)."""
    from PIL import Image
    from transformers import CLIPImageProcessorPil, LlavaProcessor

    image_processor = CLIPImageProcessorPil(
        size={"shortest_edge": IMAGE_PX}, crop_size={"height": IMAGE_PX, "width": IMAGE_PX}, do_center_crop=True,
        resample=Image.Resampling.BICUBIC, image_mean=IMAGENET_MEAN, image_std=IMAGENET_STD,
    )
    return LlavaProcessor(image_processor=image_processor, tokenizer=tokenizer, patch_size=PATCH_PX,
                          vision_feature_select_strategy="default", num_additional_image_tokens=1,
                          image_token=IMAGE_TOKEN, chat_template=CHAT_TEMPLATE)


def build_config(smollm2: Path, tokenizer: Any) -> Any:
    from transformers import AutoConfig, LlavaConfig

    text = AutoConfig.from_pretrained(smollm2)
    return LlavaConfig(
        text_config=text.to_dict(), vision_config=dinov2_config(IMAGE_PX).to_dict(),
        image_token_index=tokenizer.convert_tokens_to_ids(IMAGE_TOKEN), image_seq_length=(IMAGE_PX // PATCH_PX) ** 2,
        vision_feature_select_strategy="default", vision_feature_layer=VISION_FEATURE_LAYER,
        projector_hidden_act="gelu", multimodal_projector_bias=True, tie_word_embeddings=text.tie_word_embeddings,
    )


def build_model(projector: dict[str, torch.Tensor] | None = None, seed: int = 0) -> tuple[Any, Any]:
    """(model in eval mode, fp32; processor) of `dino-smollm2-llava` with the projector weights `projector`
    (keys `linear_1.weight`, ...), or the committed ones; a seeded fresh projector when `projector` is {}."""
    from transformers import AutoModelForCausalLM, Dinov2Model, LlavaForConditionalGeneration

    smollm2, dinov2 = ensure_smollm2(), ensure_dinov2()
    tokenizer = build_tokenizer(smollm2)
    config = build_config(smollm2, tokenizer)
    torch.manual_seed(seed)
    model = LlavaForConditionalGeneration(config).float().eval()
    language = AutoModelForCausalLM.from_pretrained(smollm2, dtype=torch.float32)
    model.model.language_model.load_state_dict(language.model.state_dict(), strict=True)
    tower = at_image_size(Dinov2Model.from_pretrained(dinov2, dtype=torch.float32), IMAGE_PX)
    model.model.vision_tower.load_state_dict(tower.state_dict(), strict=True)
    if projector is None:
        projector = committed_projector()
    if projector:
        model.model.multi_modal_projector.load_state_dict(projector, strict=True)
    model.tie_weights()
    if model.lm_head.weight.data_ptr() != model.model.language_model.embed_tokens.weight.data_ptr():
        raise RuntimeError("the assembled model's lm_head is not tied to its input embeddings")
    model.generation_config.bos_token_id = tokenizer.bos_token_id
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    return model, build_processor(tokenizer)


def committed_projector() -> dict[str, torch.Tensor]:
    """The projector weights committed beside this module; CaptureError if they are not there."""
    from safetensors.torch import load_file

    if not PROJECTOR_FILE.is_file():
        raise CaptureError(f"{PROJECTOR_FILE} is missing; train it with `python -m toy train-projector`")
    return load_file(PROJECTOR_FILE)


def build_record(name: str) -> dict[str, Any]:
    """What a cached build depends on: the assembly and conversion versions and the projector's bytes."""
    projector_sha256 = hashlib.sha256(PROJECTOR_FILE.read_bytes()).hexdigest() if PROJECTOR_FILE.is_file() else None
    return {"name": name, "version": ASSEMBLY_VERSION, "smollm2_version": SMOLLM2_VERSION,
            "dinov2_version": DINOV2_VERSION, "projector_sha256": projector_sha256}


def build_revision(model_dir: Path) -> str:
    """The revision a capture records for a cached build: assembly version and the projector's sha256 prefix."""
    record = json.loads((model_dir / BUILD_FILE).read_text())
    return f"real-parts-v{record['version']}+projector-{record['projector_sha256'][:12]}"


def save_model(model: Any, processor: Any, out_dir: Path, record: dict[str, Any]) -> Path:
    """Save model, processor and build record into `out_dir` (replaced whole)."""
    with staged_directory(out_dir) as staging:
        model.config.dtype = torch.float32
        model.save_pretrained(staging)
        processor.save_pretrained(staging)
        (staging / BUILD_FILE).write_text(json.dumps(record, indent=1) + "\n")
    return out_dir


def ensure_real_parts_model(name: str) -> Path:
    """The directory of the real-parts model `name`, fetched, converted and assembled if missing or stale."""
    if name not in REAL_PARTS_MODELS:
        raise CaptureError(f"unknown real-parts model {name!r} (known: {', '.join(REAL_PARTS_MODELS)})")
    out_dir = real_parts_model_dir(name)
    record = build_record(name)
    marker = out_dir / BUILD_FILE
    if marker.is_file() and json.loads(marker.read_text()) == record:
        return out_dir
    model, processor = build_model()
    return save_model(model, processor, out_dir, record)
