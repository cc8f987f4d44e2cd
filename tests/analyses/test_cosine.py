"""Cosine curves against their definition: a hand-built sample (mean over pairs of a.b / |a||b|) and numpy on a
captured store; the user's text apart from the template's tokens."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import xarray as xr

import store.reader
from analyses.cosine import cosine_curve, curves, mean_hidden, summarise, text_mask
from store.schema import TokenKind

IMAGE, TEXT = int(TokenKind.IMAGE), int(TokenKind.TEXT)


def mean_cosine(a: list, b: list, distinct: bool = False) -> float:
    """The mean of a.b / (|a| |b|) over pairs (a from `a`, b from `b`; over unordered distinct pairs of `a`)."""
    pairs = itertools.combinations(a, 2) if distinct else itertools.product(a, b)
    return float(np.mean([np.dot(x, y) / (np.linalg.norm(x) * np.linalg.norm(y)) for x, y in pairs]))


def hand_built() -> xr.Dataset:
    """One sample, one stream: two image tokens, the user's two words, one template token, one padding slot."""
    hidden = np.array([[1, 0], [1, 1], [0, 1], [1, 2], [1, 0], [0, 0]], np.float32)
    return xr.Dataset({
        "hidden": (("sample", "stream", "token", "d_model"), hidden[None, None]),
        "kind": (("sample", "token"), np.array([[IMAGE, IMAGE, TEXT, TEXT, TEXT, -1]], np.int8)),
        "user_text": (("sample", "token"), np.array([[False, False, True, True, False, False]])),
        "status": (("sample",), np.array([1], np.int8)),
    }, coords={"stream": [0]})


def test_curves_on_a_hand_built_sample():
    ds = hand_built()
    image, user, template = [[1, 0], [1, 1]], [[0, 1], [1, 2]], [[1, 0]]
    result = curves(ds).isel(sample=0, stream=0)
    assert float(result.image_text) == pytest.approx(mean_cosine(image, user))
    assert float(result.image_image) == pytest.approx(mean_cosine(image, None, distinct=True))
    assert float(result.text_text) == pytest.approx(mean_cosine(user, None, distinct=True))
    assert float(cosine_curve(ds, "template").isel(sample=0, stream=0)) == pytest.approx(mean_cosine(image, template))
    # mean-centred: minus the mean of the five stored tokens, (0.8, 0.8)
    centre = np.mean(image + user + template, axis=0)
    np.testing.assert_allclose(mean_hidden(ds).isel(stream=0).values, centre)
    centred = curves(ds, centre=mean_hidden(ds)).isel(sample=0, stream=0)
    assert float(centred.image_text) == pytest.approx(mean_cosine(np.subtract(image, centre), np.subtract(user, centre)))


def test_an_empty_user_text_has_no_curve_and_old_stores_are_refused():
    ds = hand_built()
    ds["user_text"] = xr.zeros_like(ds.user_text)  # Wei's empty prompt: only template tokens follow the image
    assert np.isnan(float(cosine_curve(ds).isel(sample=0, stream=0)))
    assert float(cosine_curve(ds, "after_image").isel(sample=0, stream=0)) == pytest.approx(
        mean_cosine([[1, 0], [1, 1]], [[0, 1], [1, 2], [1, 0]]))
    with pytest.raises(ValueError, match="does not mark the user's text"):
        cosine_curve(ds.drop_vars("user_text"))


def test_cosine_curve_equals_numpy(captured_store):
    ds = store.reader.open(captured_store)
    curve = cosine_curve(ds).compute()
    hidden = np.asarray(ds.hidden.values, np.float64)
    kind, user = ds.kind.values, ds.user_text.values
    for sample in range(ds.sizes["sample"]):
        image = np.flatnonzero(kind[sample] == TokenKind.IMAGE)
        text = np.flatnonzero((kind[sample] == TokenKind.TEXT) & user[sample])
        assert len(text) > 0
        for stream in range(ds.sizes["stream"]):
            v = hidden[sample, stream, image]
            t = hidden[sample, stream, text]
            v = v / np.linalg.norm(v, axis=1, keepdims=True)
            t = t / np.linalg.norm(t, axis=1, keepdims=True)
            expected = (v @ t.T).mean()
            assert abs(float(curve.isel(sample=sample, stream=stream)) - expected) < 1e-5


def test_text_sets_and_summary(captured_store):
    ds = store.reader.open(captured_store)
    user, template = text_mask(ds).values, text_mask(ds, "template").values
    after, everything = text_mask(ds, "after_image").values, text_mask(ds, "all").values
    assert (after >= user).all() and not (user & template).any() and ((user | template) == everything).all()
    assert after.sum() > user.sum() > 0  # the template's tokens after the user's text ("assistant", newlines)
    summary = summarise(cosine_curve(ds))
    assert set(summary) == {"mean", "low", "high", "std", "q25", "q75", "n_samples"}
    assert (summary.n_samples.values == ds.sizes["sample"]).all()
    assert (summary.low.values <= summary["mean"].values).all() and (summary["mean"].values <= summary.high.values).all()
