"""Model-family adapters. Each family's quirks live in its own module; unknown architectures are refused."""

from __future__ import annotations

from transformers import PretrainedConfig

from capture.errors import CaptureError
from capture.families.base import FamilyAdapter, TokenTable
from capture.families.llava import LlavaAdapter
from capture.families.llava_next import LlavaNextAdapter
from capture.families.llava_onevision import LlavaOnevisionAdapter
from capture.families.qwen2_5_vl import Qwen2_5_VLAdapter

ADAPTERS: dict[str, FamilyAdapter] = {
    adapter.family: adapter
    for adapter in (LlavaOnevisionAdapter(), Qwen2_5_VLAdapter(), LlavaAdapter(), LlavaNextAdapter())
}


def adapter_for_config(config: PretrainedConfig) -> FamilyAdapter:
    """The adapter whose family handles `config.model_type`; a clear error for anything else."""
    for adapter in ADAPTERS.values():
        if config.model_type in adapter.model_types:
            return adapter
    supported = sorted(t for a in ADAPTERS.values() for t in a.model_types)
    raise CaptureError(
        f"unsupported architecture model_type={config.model_type!r} "
        f"(supported: {', '.join(supported)}); refusing to guess its layout"
    )


__all__ = ["ADAPTERS", "FamilyAdapter", "TokenTable", "adapter_for_config"]
