"""The logit lens on the real SmolLM2 (a text-only capture of dino-smollm2-llava): the last stream's lens gives the
model's own logits, and the real LM's next-token knowledge shows through it (benchmarks/real_parts.py measures the
same on 50 sentences)."""

from __future__ import annotations

import json

import numpy as np
import torch

import store.reader
from analyses.lens import Lens
from capture.run import CaptureOptions, run_capture

SENTENCES = ["The capital of France is Paris, and the capital of Italy is Rome.",
             "A week has seven days, and a year has twelve months."]


def test_last_stream_lens_is_the_models_next_token(real_model, tmp_path):
    manifest = tmp_path / "sentences.jsonl"
    manifest.write_text("".join(json.dumps({"id": str(i), "text": text}) + "\n" for i, text in enumerate(SENTENCES)))
    run_capture(CaptureOptions(model="dino-smollm2-llava", dataset="manifest", data_root=manifest,
                               template="{image}{text}", dtype="fp32", ffn_topk=0, progress=False,
                               out=tmp_path / "text.zarr"))
    ds = store.reader.open(tmp_path / "text.zarr")
    lens = Lens.from_store(store.reader.open_lens(tmp_path / "text.zarr"), "float32")
    tokenizer = real_model.processor.tokenizer
    hits = positions = 0
    predicted = []
    for s, text in enumerate(SENTENCES):
        ids = tokenizer(text)["input_ids"]  # plain text: no special tokens, no chat wrapping
        n = int(ds.n_tokens.values[s])
        assert ds.token_id.values[s, :n].tolist() == ids
        last = lens.logits(np.asarray(ds.hidden.isel(sample=s, stream=-1).values[:n]))
        with torch.inference_mode():
            own = real_model.model(input_ids=torch.tensor([ids])).logits[0].numpy()
        assert np.abs(last - own).max() < 1e-3  # fp32; the matmul's summation order may differ
        assert (last.argmax(-1) == own.argmax(-1)).all()
        predicted.append(list(lens.vocabulary[last.argmax(-1)]))
        hits += int((last.argmax(-1)[:-1] == np.array(ids[1:])).sum())
        positions += n - 1
    assert predicted[0][4] == " Paris"  # "The capital of France is" -> " Paris"
    assert hits / positions > 0.4  # the unigram baseline (always ' the') scores under 0.15
