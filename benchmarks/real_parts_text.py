"""Real-parts benchmark, text side: the logit lens and the FFN value vectors of the real SmolLM2 on ordinary
sentences (benchmarks/data/sentences.txt, captured text-only with the raw template '{text}': no chat wrapping)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import xarray as xr
from real_parts_common import REAL, capture, show, write_manifest

import store.reader
from analyses import figures, intervals
from analyses.ffn_memory import value_top_tokens
from analyses.lens import Lens, top_tokens
from analyses.output import Output
from store.schema import LAYER, LENS_DOWN_PROJ, SAMPLE, STREAM, SampleStatus

SENTENCES = Path(__file__).with_name("data") / "sentences.txt"
N_KEYS, TOP, N_DRAWS = 3, 3, 100  # Jung et al.: top-3 keys per layer, their values' top-3 tokens, 3 random values


def sentences() -> list[str]:
    """The sentences of SENTENCES (comment lines left out)."""
    return [line for line in SENTENCES.read_text().splitlines() if line.strip() and not line.startswith("#")]


def text_store(work: Path, quick: bool) -> Path:
    """The text-only fp32 capture of the sentences (FFN top-16, signed); an existing one of the same sentences
    (manifest unchanged, capture complete) is reused."""
    lines = sentences()[: 4 if quick else None]
    records = [{"id": f"s{i:02d}", "text": text} for i, text in enumerate(lines)]
    manifest, path = work / "sentences" / "manifest.jsonl", work / "sentences.zarr"
    wanted = "".join(json.dumps(record) + "\n" for record in records)
    if manifest.is_file() and manifest.read_text() == wanted and path.is_dir():
        ds = store.reader.open(path)
        if ds.sizes[SAMPLE] == len(records) and (ds.status.values == SampleStatus.CAPTURED).all():
            return path
    write_manifest(manifest, records)
    capture(path, dataset="manifest", data_root=manifest, template="{image}{text}", ffn_topk=16, batch_size=16)
    return path


def token_ids(ds: xr.Dataset) -> list[np.ndarray]:
    """Each sentence's token ids."""
    return [ds.token_id.values[s, :n] for s, n in enumerate(ds.n_tokens.values)]


def lens_step(work: Path, figure_dir: Path, quick: bool) -> tuple[str, list[str], dict]:
    """Lens = the model's own logits at the last stream; next-token top-1 per stream vs chance and unigram."""
    import torch
    from transformers import AutoModelForImageTextToText

    from capture.real_parts.assemble import ensure_real_parts_model

    path = text_store(work, quick)
    ds = store.reader.open(path)
    lens = Lens.from_store(store.reader.open_lens(path), "float32")
    model = AutoModelForImageTextToText.from_pretrained(ensure_real_parts_model(REAL), dtype=torch.float32).eval()
    ids = token_ids(ds)
    n_streams = ds.sizes[STREAM]
    hits, max_diff, same_top, examples = np.zeros((len(ids), n_streams)), 0.0, 0, []
    longest = max(map(len, ids))
    shard = ds.hidden.chunks[0][0] if ds.hidden.chunks else len(ids)  # read each shard once
    for s, sentence in enumerate(ids):
        if s % shard == 0:
            block = np.asarray(ds.hidden.isel(sample=slice(s, s + shard), token=slice(0, longest)).values)
        hidden = block[s % shard, :, : len(sentence)]
        last = lens.logits(hidden[-1])
        with torch.inference_mode():
            own = model(input_ids=torch.from_numpy(sentence.astype(np.int64))[None]).logits[0].numpy()
        max_diff = max(max_diff, float(np.abs(last - own).max()))
        same_top += int((last.argmax(-1) == own.argmax(-1)).sum())
        for stream in range(n_streams):
            hits[s, stream] = (top_tokens(hidden[stream, :-1], lens, 1)[0][:, 0] == sentence[1:]).sum()
        if s < 3:
            examples.append([[lens.vocabulary[a], lens.vocabulary[b]] for a, b in zip(sentence[1:], last.argmax(-1))])
    counts = np.array([len(sentence) - 1 for sentence in ids])
    targets = np.concatenate([sentence[1:] for sentence in ids])
    values, frequency = np.unique(targets, return_counts=True)
    common = int(values[frequency.argmax()])
    unigram = intervals.bootstrap_ratio([(sentence[1:] == common).sum() for sentence in ids], counts)
    curve = intervals.stack([intervals.bootstrap_ratio(hits[:, k], counts) for k in range(n_streams)], STREAM,
                            np.arange(n_streams))
    flat = intervals.stack([unigram] * n_streams, STREAM, np.arange(n_streams))
    Output(figure_dir).figure("lens_top1.png", figures.interval_panels(
        {"next-token top-1": {"logit lens": curve, f"unigram baseline ({lens.vocabulary[common]!r})": flat}},
        "top-1 accuracy", f"Logit lens of {REAL} on {len(ids)} sentences", xlabel=STREAM))
    final = intervals.bootstrap_ratio(hits[:, -1], counts)
    summary = {"n_sentences": len(ids), "n_positions": int(counts.sum()), "n_lens_positions": int(sum(map(len, ids))),
               "max_abs_diff_lens_vs_model_logits": max_diff, "same_top1_lens_vs_model": same_top,
               "top1_last_stream": final.as_dict(), "chance": 1 / len(lens.vocabulary),
               "unigram_token": str(lens.vocabulary[common]), "unigram": unigram.as_dict(),
               "per_stream": intervals.as_json(curve), "examples (target, lens top-1)": examples}
    lines = [
        f"{len(ids)} sentences, {int(counts.sum())} next-token positions (text only, raw template, fp32).",
        "",
        "| measure | value |", "|---|---|",
        f"| last stream's lens vs the model's logits: max abs diff | {max_diff:.3g} |",
        f"| positions where lens top-1 = model top-1 | {same_top} / {int(sum(map(len, ids)))} |",
        f"| top-1 next-token accuracy, last stream (95% CI, bootstrap over sentences) | {show(final)} |",
        f"| chance (1 / vocab) | {1 / len(lens.vocabulary):.2e} |",
        f"| unigram baseline: always {lens.vocabulary[common]!r} (most frequent target, in-sample) | {show(unigram)} |",
        f"| best earlier stream | {int(np.argmax(curve.estimate.values[:-1]))}: {float(curve.estimate.values[:-1].max()):.3f} |",
    ]
    return "Real parts: logit lens on the real SmolLM2", lines, summary


def ffn_step(work: Path, figure_dir: Path, quick: bool) -> tuple[str, list[str], dict]:
    """Jung et al. §6 on the real LM: do the top-3 tokens of the 3 most activated values name the next token?"""
    path = text_store(work, quick)
    ds = store.reader.open(path)
    lens_ds = store.reader.open_lens(path)
    lens = Lens.from_store(lens_ds, "float32")
    ids = token_ids(ds)
    owner = np.concatenate([np.full(len(sentence) - 1, s) for s, sentence in enumerate(ids)])
    position = np.concatenate([np.arange(len(sentence) - 1) for sentence in ids])
    target = np.concatenate([sentence[1:] for sentence in ids])
    chosen = ds.ffn_topk_index.values[owner, :, position, :N_KEYS]  # (prefix, layer, rank), largest first
    layers = ds[LAYER].values
    rng = np.random.default_rng(0)
    agrees = np.zeros(chosen.shape, bool)
    random = np.zeros((N_DRAWS, len(layers)))
    for li, layer in enumerate(layers):
        down_proj = np.asarray(lens_ds[LENS_DOWN_PROJ].sel(layer=layer).values)
        units, inverse = np.unique(chosen[:, li], return_inverse=True)
        best = value_top_tokens(lens, down_proj, units, TOP)[inverse.ravel()].reshape(*chosen[:, li].shape, TOP)
        agrees[:, li] = (best == target[:, None, None]).any(-1)
        drawn = rng.integers(0, down_proj.shape[1], size=(N_DRAWS, N_KEYS))
        tops = value_top_tokens(lens, down_proj, drawn.ravel(), TOP).reshape(N_DRAWS, N_KEYS, TOP)
        random[:, li] = [np.mean([np.isin(target, tops[d, v]).mean() for v in range(N_KEYS)]) for d in range(N_DRAWS)]
    groups = np.broadcast_to(owner[:, None], agrees[:, 0].shape).ravel()
    per_layer = intervals.stack([intervals.bootstrap_mean(agrees[:, li].ravel(), groups) for li in range(len(layers))],
                                LAYER, layers)
    baseline = intervals.stack([intervals.spread(random[:, li]) for li in range(len(layers))], LAYER, layers)
    pooled = intervals.bootstrap_mean(agrees.mean(axis=(1, 2)), owner)
    pooled_random = intervals.spread(random.mean(axis=1))
    Output(figure_dir).figure("ffn_values.png", figures.interval_panels(
        {"value top-3 contains the next token": {"top-3 activated values": per_layer, "random values": baseline}},
        "agreement rate", f"FFN values of {REAL}'s LM on {len(ids)} sentences"))
    best_layer = int(np.argmax(per_layer.estimate.values))
    summary = {"n_sentences": len(ids), "n_prefixes": len(target), "keys_per_layer": N_KEYS, "top_tokens": TOP,
               "random_draws": N_DRAWS, "pooled_over_layers": pooled.as_dict(),
               "random_pooled_over_layers": pooled_random.as_dict(), "per_layer": intervals.as_json(per_layer),
               "random_per_layer": intervals.as_json(baseline)}
    lines = [
        f"{len(target)} next-token positions in {len(ids)} sentences; per layer the top-{N_KEYS} FFN keys (largest "
        f"signed coefficients) and the top-{TOP} tokens of their values (down_proj columns through the unembedding).",
        "",
        "| measure | activated values (95% CI, cluster bootstrap over sentences) | random values (mean, central 95% "
        f"of {N_DRAWS} draws) |", "|---|---|---|",
        f"| agreement with the next token, all layers | {show(pooled, 4)} | {show(pooled_random, 4)} |",
        f"| best layer ({int(layers[best_layer])}) | {show(_at(per_layer, best_layer), 4)} | "
        f"{show(_at(baseline, best_layer), 4)} |",
        f"| last layer ({int(layers[-1])}) | {show(_at(per_layer, -1), 4)} | {show(_at(baseline, -1), 4)} |",
    ]
    return "Real parts: FFN value vectors vs the next token (Jung et al. §6)", lines, summary


def _at(curve: xr.Dataset, index: int) -> intervals.Interval:
    point = curve.isel({list(curve.dims)[0]: index})
    return intervals.Interval(float(point.estimate), float(point.low), float(point.high), int(point.n), "")
