"""The released checkpoints' architecture, for sizing a capture where their config.json is not on disk.

The fields that decide token counts and store sizes, transcribed from each hub repository's
config.json (text tower, vision tile and patch, anyres pinpoints, feature selection). When the
checkpoint's own config.json is in the HF cache, `capture.sizing` uses that instead.
"""

from __future__ import annotations

from typing import Any

from transformers import CONFIG_MAPPING, PretrainedConfig

_SIGLIP_384 = {"model_type": "siglip_vision_model", "image_size": 384, "patch_size": 14, "hidden_size": 1152,
               "intermediate_size": 4304, "num_hidden_layers": 26, "num_attention_heads": 16, "vision_use_head": False}
_CLIP_336 = {"model_type": "clip_vision_model", "image_size": 336, "patch_size": 14, "hidden_size": 1024,
             "intermediate_size": 4096, "num_hidden_layers": 24, "num_attention_heads": 16, "projection_dim": 768}
_OV_PINPOINTS = [[384 * i, 384 * j] for i in range(1, 7) for j in range(1, 7)]


def _onevision(hidden: int, layers: int, heads: int, kv_heads: int, intermediate: int) -> dict[str, Any]:
    return {
        "model_type": "llava_onevision",
        "text_config": {"model_type": "qwen2", "hidden_size": hidden, "num_hidden_layers": layers,
                        "num_attention_heads": heads, "num_key_value_heads": kv_heads, "intermediate_size": intermediate},
        "vision_config": _SIGLIP_384,
        "image_grid_pinpoints": _OV_PINPOINTS,
        "vision_aspect_ratio": "anyres_max_9",
        "vision_feature_select_strategy": "full",
        "vision_feature_layer": -1,
    }


REFERENCE_CONFIGS: dict[str, dict[str, Any]] = {
    "llava-ov-0.5b": _onevision(896, 24, 14, 2, 4864),
    "llava-ov-7b": _onevision(3584, 28, 28, 4, 18944),
    "llava-ov-72b": _onevision(8192, 80, 64, 8, 29568),
    "qwen2.5-vl-7b": {
        "model_type": "qwen2_5_vl",
        "text_config": {"hidden_size": 3584, "num_hidden_layers": 28, "num_attention_heads": 28, "num_key_value_heads": 4,
                        "intermediate_size": 18944,
                        "rope_parameters": {"rope_type": "default", "rope_theta": 1_000_000.0, "mrope_section": [16, 24, 24]}},
        "vision_config": {"depth": 32, "hidden_size": 1280, "intermediate_size": 3420, "num_heads": 16, "patch_size": 14,
                          "spatial_merge_size": 2, "temporal_patch_size": 2, "window_size": 112, "out_hidden_size": 3584,
                          "fullatt_block_indexes": [7, 15, 23, 31]},
    },
    "llava-1.5-7b": {
        "model_type": "llava",
        "text_config": {"model_type": "llama", "hidden_size": 4096, "num_hidden_layers": 32, "num_attention_heads": 32,
                        "num_key_value_heads": 32, "intermediate_size": 11008},
        "vision_config": _CLIP_336,
        "vision_feature_select_strategy": "default",
        "vision_feature_layer": -2,
    },
    "llama3-llava-next-8b": {
        "model_type": "llava_next",
        "text_config": {"model_type": "llama", "hidden_size": 4096, "num_hidden_layers": 32, "num_attention_heads": 32,
                        "num_key_value_heads": 8, "intermediate_size": 14336},
        "vision_config": _CLIP_336,
        "image_grid_pinpoints": [[336, 672], [672, 336], [672, 672], [1008, 336], [336, 1008]],
        "vision_feature_select_strategy": "default",
        "vision_feature_layer": -2,
    },
}


def reference_config(alias: str) -> PretrainedConfig:
    """The config object of released checkpoint `alias` (see `REFERENCE_CONFIGS`)."""
    if alias not in REFERENCE_CONFIGS:
        raise KeyError(f"no reference config for {alias!r} (have: {', '.join(REFERENCE_CONFIGS)})")
    fields = dict(REFERENCE_CONFIGS[alias])
    return CONFIG_MAPPING[fields.pop("model_type")](**fields)

