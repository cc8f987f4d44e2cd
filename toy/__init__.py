"""`toy-llava-ov`: a tiny LLaVA-OneVision trained here, in minutes, on synthetic shape scenes.

Random tiny models prove the plumbing; this one has learnt to see (name shapes and colours, answer yes/no
questions, name the object in a box), so the papers' signatures can appear in its activations. It is the
real architecture (SigLIP tower, 2-layer projector, Qwen2 language model) and loads through the same code
path as a released checkpoint.

- `toy.scenes`: training and held-out examples (captions, polling questions, box prompts) from scenes;
- `toy.model`: the toy's sizes, tokenizer and config, and its cached build (`ensure_toy_model`);
- `toy.train`: the deterministic training loop with the freezing schedules;
- `toy.evaluate`: held-out caption word and polling accuracy;
- `python -m toy`: train (or reuse) and report.
"""
