"""Cosine curves equal a direct numpy computation on a small store."""

from __future__ import annotations

import numpy as np

import store.reader
from analyses.cosine import cosine_curve, summarise, text_mask
from store.schema import TokenKind


def test_cosine_curve_equals_numpy(captured_store):
    ds = store.reader.open(captured_store)
    curve = cosine_curve(ds).compute()
    hidden = np.asarray(ds.hidden.values, np.float64)
    kind = ds.kind.values
    for sample in range(ds.sizes["sample"]):
        image = np.flatnonzero(kind[sample] == TokenKind.IMAGE)
        text = np.flatnonzero(kind[sample] == TokenKind.TEXT)
        text = text[text > image.max()]
        for stream in range(ds.sizes["stream"]):
            v = hidden[sample, stream, image]
            t = hidden[sample, stream, text]
            v = v / np.linalg.norm(v, axis=1, keepdims=True)
            t = t / np.linalg.norm(t, axis=1, keepdims=True)
            expected = (v @ t.T).mean()
            assert abs(float(curve.isel(sample=sample, stream=stream)) - expected) < 1e-5


def test_text_sets_and_summary(captured_store):
    ds = store.reader.open(captured_store)
    after = text_mask(ds).values
    everything = text_mask(ds, "all").values
    assert (everything >= after).all() and everything.sum() > after.sum() > 0
    summary = summarise(cosine_curve(ds))
    assert set(summary) == {"mean", "std", "q25", "q75", "n_samples"}
    assert (summary.n_samples.values == ds.sizes["sample"]).all()
