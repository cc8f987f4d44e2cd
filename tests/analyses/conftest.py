"""Stores with planted answers: tiny models edited so that chosen heads or layers behave in a known way."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from capture.loading import resolve_model
from capture.run import CaptureOptions, run_capture

PLANTED_HEADS = [(0, 1), (1, 0)]  # (layer, kv_head) made input-agnostic
PATCH = 14


def edited_model(name: str, out: Path, edit: Callable[[torch.nn.Module], None]) -> Path:
    """A copy of tiny model `name` with `edit` applied to its weights, as a local checkpoint directory."""
    from transformers import AutoModelForImageTextToText

    source = resolve_model(name).local_dir
    shutil.copytree(source, out)
    model = AutoModelForImageTextToText.from_pretrained(source, dtype=torch.bfloat16)
    with torch.no_grad():
        edit(model)
    model.save_pretrained(out)
    return out


def _constant_keys(model: torch.nn.Module) -> None:
    """Planted heads' keys ignore the input: zero k_proj rows, a fixed random bias (post-RoPE they are then
    equal wherever the sequence position is equal)."""
    decoder = model.model.language_model
    head_dim = decoder.config.hidden_size // decoder.config.num_attention_heads
    generator = torch.Generator().manual_seed(7)
    for layer, head in PLANTED_HEADS:
        k_proj = decoder.layers[layer].self_attn.k_proj
        rows = slice(head * head_dim, (head + 1) * head_dim)
        k_proj.weight[rows] = 0
        k_proj.bias[rows] = torch.randn(head_dim, generator=generator).to(k_proj.bias.dtype)


def _patch_local_vision(model: torch.nn.Module) -> None:
    """Vision tokens depend on their own patch only: no position embeddings, no attention mixing."""
    vision = model.model.vision_tower
    vision.embeddings.position_embedding.weight.zero_()
    for layer in vision.encoder.layers:
        layer.self_attn.out_proj.weight.zero_()
        layer.self_attn.out_proj.bias.zero_()


@pytest.fixture(scope="session")
def planted_variance_store(cache_home, synthetic_root, tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("planted-variance")
    model = edited_model("tiny-llava-ov", root / "model", _constant_keys)
    out = root / "store.zarr"
    run_capture(CaptureOptions(model=str(model), data_root=synthetic_root, out=out, tokens="image", progress=False,
                               batch_size=4, keys_prerope=True))
    return out


@pytest.fixture(scope="session")
def plain_store(cache_home, synthetic_root, tmp_path_factory) -> Path:
    """The unedited tiny OneVision on all 12 synthetic-coco images."""
    out = tmp_path_factory.mktemp("plain") / "store.zarr"
    run_capture(CaptureOptions(model="tiny-llava-ov", data_root=synthetic_root, out=out, progress=False, batch_size=4))
    return out


def mirror_symmetric_image(seed: int, size: int = 56) -> np.ndarray:
    """Random pixels whose every 14 px patch column is left-right symmetric, so flipping the image maps each
    patch onto another with identical content."""
    rng = np.random.RandomState(seed)
    image = np.zeros((size, size, 3), np.uint8)
    for col in range(size // PATCH):
        half = rng.randint(0, 255, (size, PATCH // 2, 3), dtype=np.uint8)
        image[:, col * PATCH: col * PATCH + PATCH // 2] = half
        image[:, col * PATCH + PATCH // 2: (col + 1) * PATCH] = half[:, ::-1]
    return image


@pytest.fixture(scope="session")
def transform_manifest(tmp_path_factory) -> Path:
    """Pairs (image, its mirror) and (image, rolled by one patch) with every patch centre as a keypoint, and a
    video of the image rolling one patch per frame with a patch-aligned mask moving along."""
    root = tmp_path_factory.mktemp("transforms")
    image = mirror_symmetric_image(0)
    Image.fromarray(image).save(root / "orig.png")
    Image.fromarray(image[:, ::-1]).save(root / "flip.png")
    Image.fromarray(np.roll(image, PATCH, axis=1)).save(root / "roll.png")
    centres = [[c * PATCH + PATCH / 2, r * PATCH + PATCH / 2] for r in range(4) for c in range(4)]
    mask = np.zeros((56, 56), np.uint8)
    mask[14:42, 0:28] = 1
    records = [
        {"id": "flip", "images": ["orig.png", "flip.png"], "keypoints": [centres, [[56 - x, y] for x, y in centres]]},
        {"id": "roll", "images": ["orig.png", "roll.png"],
         "keypoints": [centres, [[(x + PATCH) % 56, y] for x, y in centres]]},
    ]
    for t in range(5):
        Image.fromarray(np.roll(image, PATCH * t, axis=1)).save(root / f"frame{t}.png")
        Image.fromarray(np.roll(mask, PATCH * t, axis=1)).save(root / f"mask{t}.png")
        records.append({"id": f"frame{t}", "image": f"frame{t}.png", "video": "roll", "frame": t, "masks": f"mask{t}.png"})
    (root / "manifest.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    return root


@pytest.fixture(scope="session")
def local_patch_store(cache_home, transform_manifest, tmp_path_factory) -> Path:
    """LLaVA-1.5 whose vision tokens see only their own patch, on the transform manifest (fp32)."""
    root = tmp_path_factory.mktemp("local-patch")
    model = edited_model("tiny-llava-1.5", root / "model", _patch_local_vision)
    out = root / "store.zarr"
    run_capture(CaptureOptions(model=str(model), dataset="manifest", data_root=transform_manifest, out=out,
                               dtype="fp32", keys_prerope=True, progress=False))
    return out


def _capture(tmp_path_factory, name: str, **options) -> Path:
    out = tmp_path_factory.mktemp(name) / "store.zarr"
    run_capture(CaptureOptions(model="tiny-llava-ov", out=out, progress=False, **options))
    return out


@pytest.fixture(scope="session")
def prefix_store(cache_home, synthetic_root, tmp_path_factory) -> Path:
    """Jung et al.'s visual prefixes: one sample per box, cut before the label, last token only."""
    return _capture(tmp_path_factory, "prefixes", data_root=synthetic_root, samples="annotations", template="bbox",
                    visual_prefix=True, tokens="last", limit=12)


@pytest.fixture(scope="session")
def category_text_store(cache_home, synthetic_root, tmp_path_factory) -> Path:
    """The category names alone (text-only), for text-token segmentation."""
    return _capture(tmp_path_factory, "categories", data_root=synthetic_root, samples="categories",
                    template="{image}{text}")


@pytest.fixture(scope="session")
def attention_store(cache_home, synthetic_root, tmp_path_factory) -> Path:
    return _capture(tmp_path_factory, "attention", data_root=synthetic_root, attention_last=True, limit=3)


@pytest.fixture(scope="session")
def correspondence_store(cache_home, tmp_path_factory) -> Path:
    return _capture(tmp_path_factory, "correspondence", dataset="synthetic-correspondence")
