"""FFN layers as key-value memories (Jung et al. §4; Geva et al.), from a store of visual prefixes.

A visual prefix is a bbox prompt cut right before its label (`--template bbox --visual-prefix`), so the next
token is the label. At the prefix's last position, the largest FFN memory coefficients (inputs of down_proj)
name the most activated keys of each layer; the value of key j is column j of down_proj.

- keys: per layer the top-3 keys of each prefix; per key the distribution of its prefixes' labels;
- coherence: pairwise cosine of a key's top-3 labels' text embeddings, against random label triples;
- values: each activated key's value projected through the unembedding; its top-3 tokens agree with the
  prefix's label (the label's first token), and the top token's embedding is compared with the label's. The
  baseline is the paper's: three random values per layer, here drawn many times (the spread over draws is
  reported); where the store keeps the model's own next tokens (`--next-token-topk`), agreement is also given
  separately for the prefixes whose label the model predicts and for the others.

The prefix's last position must be the last position of the sequence (what the model predicts the label from);
a store whose last stored token is anything else is refused.
"""

from __future__ import annotations

from collections import Counter
from itertools import combinations

import numpy as np
import pandas as pd
import xarray as xr

from analyses import intervals
from analyses.lens import Lens, matches
from analyses.tokens import captured_samples, sample_annotation
from analyses.topk import Projector, torch_device
from store import annotation as ann
from store.schema import FFN_K, FFN_UNIT, LAYER, NEXT_TOKEN_TOPK_INDEX, POSITION, SAMPLE, SEQ_LEN

# label_coherence's column telling the two samples of cosines apart: labels (a key's top labels) or random (the
# baseline). Not a token kind: the name only coincides with schema.KIND, and is kept so label_coherence.csv is unchanged
COHERENCE_KIND = "kind"
LAST_ROW = "last"  # prefix_labels' column: the row of the prefix's last stored token
MODEL_TOP = "model_top"  # prefix_labels' column: the model's own top next token (when the store keeps it)
PREDICTED = "model_predicts_label"  # prefix_labels' column: model_top is the label's first token
PREFIX, RANK, DRAW = "prefix", "rank", "draw"  # dimensions of the per-key and random-value tables


def prefix_labels(ds: xr.Dataset) -> pd.DataFrame:
    """Per captured sample: its label, the id of the label's first token (`next_token_id`, when the capture cut a
    visual prefix), the row of its last stored token and, when the store keeps the model's next tokens, the model's
    top-1 and whether it is the label's first token. Samples without an object label are left out; ValueError when
    a prefix's last stored token is not the last position of its sequence."""
    rows = []
    model_top = ds[NEXT_TOKEN_TOPK_INDEX].values[:, 0] if NEXT_TOKEN_TOPK_INDEX in ds else None
    for sample in captured_samples(ds):
        annotation = sample_annotation(ds, sample)
        label = (annotation.get(ann.OBJECT) or {}).get(ann.LABEL) or annotation.get(ann.LABEL)
        if label is None:
            continue
        last = int(ds.n_tokens.values[sample]) - 1
        position, length = int(ds[POSITION].values[sample, last]), int(ds[SEQ_LEN].values[sample])
        if position != length - 1:
            raise ValueError(f"sample {sample}: the last stored token is position {position} of a {length}-token "
                             "sequence, not the prefix's last position: capture with --tokens last (or all)")
        row = {SAMPLE: int(sample), ann.LABEL: str(label), ann.NEXT_TOKEN_ID: annotation.get(ann.NEXT_TOKEN_ID),
               LAST_ROW: last}
        if model_top is not None:
            row[MODEL_TOP] = int(model_top[sample])
            row[PREDICTED] = row[ann.NEXT_TOKEN_ID] is not None and row[MODEL_TOP] == int(row[ann.NEXT_TOKEN_ID])
        rows.append(row)
    if not rows:
        raise ValueError("no labelled samples: capture bbox visual prefixes (--samples annotations --template bbox "
                         "--visual-prefix)")
    return pd.DataFrame(rows)


def top_keys(ds: xr.Dataset, prefixes: pd.DataFrame, n_keys: int = 3) -> xr.DataArray:
    """(sample, layer, rank) indices of the `n_keys` largest FFN coefficients at each prefix's last position."""
    if n_keys > ds.sizes[FFN_K]:
        raise ValueError(f"the store keeps the top {ds.sizes[FFN_K]} coefficients; asked for {n_keys}")
    index = ds.ffn_topk_index.isel(sample=xr.DataArray(prefixes[SAMPLE].values, dims="prefix"),
                                   token=xr.DataArray(prefixes[LAST_ROW].values, dims="prefix"))
    return index.isel({FFN_K: slice(0, n_keys)}).rename({FFN_K: "rank"}).compute()  # stored largest first


def key_labels(keys: xr.DataArray, labels: list[str]) -> pd.DataFrame:
    """One row per (layer, key) activated by at least one prefix: how many prefixes, and the top-3 labels with
    their shares of those prefixes."""
    rows = []
    for li, layer in enumerate(keys.layer.values):
        owners: dict[int, list[str]] = {}
        for prefix, label in enumerate(labels):
            for key in keys.values[prefix, li]:
                owners.setdefault(int(key), []).append(label)
        for key, owned in owners.items():
            counts = Counter(owned).most_common(3)
            rows.append({LAYER: int(layer), "key": key, "n_prefixes": len(owned),
                         "top_labels": [c[0] for c in counts], "shares": [c[1] / len(owned) for c in counts]})
    return pd.DataFrame(rows)


def pairwise_cosine(vectors: np.ndarray) -> list[float]:
    unit = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    return [float(unit[a] @ unit[b]) for a, b in combinations(range(len(unit)), 2)]


def label_coherence(table: pd.DataFrame, embeddings: dict[str, np.ndarray], seed: int = 0) -> pd.DataFrame:
    """Pairwise cosine of each key's top labels (keys with 2+ distinct labels), and as a baseline the same for
    as many labels drawn at random from all labels. Rows: layer, key, kind ("labels" | "random"), cosine."""
    rng = np.random.default_rng(seed)
    vocabulary = sorted(embeddings)
    rows = []
    for record in table.itertuples():
        if len(record.top_labels) < 2:
            continue
        real = np.stack([embeddings[label] for label in record.top_labels])
        drawn = rng.choice(len(vocabulary), size=len(record.top_labels), replace=len(vocabulary) < len(record.top_labels))
        random = np.stack([embeddings[vocabulary[i]] for i in drawn])
        rows += [{LAYER: record.layer, "key": record.key, COHERENCE_KIND: "labels", "cosine": c}
                 for c in pairwise_cosine(real)]
        rows += [{LAYER: record.layer, "key": record.key, COHERENCE_KIND: "random", "cosine": c}
                 for c in pairwise_cosine(random)]
    return pd.DataFrame(rows, columns=[LAYER, "key", COHERENCE_KIND, "cosine"])


def coherence_curves(coherence: pd.DataFrame, seed: int = 0) -> dict[str, xr.Dataset]:
    """Per layer, the mean pairwise label cosine of the keys' top labels ("labels") and of the random label draws
    ("random"), each with a cluster bootstrap interval over keys."""
    layers = np.array(sorted(coherence[LAYER].unique()))
    curves = {}
    for kind in ("labels", "random"):
        rows = coherence[coherence[COHERENCE_KIND] == kind]
        curves[kind] = intervals.stack(
            [intervals.bootstrap_mean(rows[rows[LAYER] == layer].cosine.to_numpy(),
                                      rows[rows[LAYER] == layer].key.to_numpy(), seed=seed) for layer in layers],
            LAYER, layers)
    return curves


def value_logits(lens: Lens, down_proj: np.ndarray, keys: np.ndarray) -> np.ndarray:
    """(n_keys, vocab) unembedding @ down_proj[:, j] for each key j; `down_proj` is one layer's (d_model, ffn_unit)."""
    values = down_proj[:, keys].astype(np.float32)  # (d_model, n_keys)
    out = (lens.unembedding @ values).T
    return out + lens.bias if lens.bias is not None else out


def value_projector(lens: Lens, device: str = "cpu", threads: int | None = None) -> Projector:
    """The unembedding (float32) on `device`, for the value projections (down_proj columns are the model's weights,
    not rounded to its compute dtype, so float32 inputs)."""
    return Projector(lens.unembedding, lens.bias, torch_device(device, threads))


def value_top_tokens(lens: Lens, down_proj: np.ndarray, units: np.ndarray, top: int = 3,
                     project: Projector | None = None) -> np.ndarray:
    """(len(units), top) ids of the highest logits of each unit's value vector, best first: the torch blocked top-k
    (`project`, default the lens on CPU) of `value_logits`' products."""
    project = project or value_projector(lens)
    return project.top_k(down_proj[:, units].astype(np.float32).T, top)[0]


def _agrees(ids: np.ndarray, row: object, lens: Lens) -> bool:
    """Whether value top tokens `ids` include the prefix's label: its first token id when known, else a token
    naming it."""
    if row.next_token_id is not None and not pd.isna(row.next_token_id):
        return int(row.next_token_id) in ids
    return any(matches(lens.vocabulary[i], row.label) for i in ids)


def key_value_hits(keys: xr.DataArray, prefixes: pd.DataFrame, lens: Lens, down_proj: xr.DataArray,
                   embeddings: dict[str, np.ndarray] | None = None, top: int = 3,
                   project: Projector | None = None) -> xr.Dataset:
    """Per (prefix, layer, rank) activated key: `agrees`, 1 when its value's top-`top` tokens include the prefix's
    label, and `cosine`, the embedding cosine of the value's top token with the label (NaN without `embeddings`)."""
    shape = (len(prefixes), len(keys.layer), keys.sizes["rank"])
    agrees, cosines = np.zeros(shape), np.full(shape, np.nan)
    for li, layer in enumerate(keys.layer.values):
        chosen = keys.values[:, li, :]
        best = value_top_tokens(lens, np.asarray(down_proj.sel(layer=layer).values), chosen.ravel(), top, project)
        best = best.reshape(*chosen.shape, top)
        _embed_tokens(embeddings, lens, best[..., 0])
        for p, row in enumerate(prefixes.itertuples()):
            for r in range(chosen.shape[1]):
                agrees[p, li, r] = _agrees(best[p, r], row, lens)
                if embeddings is not None:
                    cosines[p, li, r] = _cosine(_word_embedding(embeddings, lens, best[p, r, 0]), embeddings[row.label])
    dims = (PREFIX, LAYER, RANK)
    return xr.Dataset({"agrees": (dims, agrees), "cosine": (dims, cosines)}, coords={LAYER: keys.layer.values})


def random_value_hits(prefixes: pd.DataFrame, lens: Lens, down_proj: xr.DataArray, layers: np.ndarray,
                      embeddings: dict[str, np.ndarray] | None = None, n_values: int = 3, n_draws: int = 100,
                      top: int = 3, seed: int = 0, project: Projector | None = None) -> xr.Dataset:
    """Jung et al.'s baseline, drawn `n_draws` times: per draw and layer, `n_values` FFN units drawn uniformly and
    shared by every prefix; `agreement` and `cosine` (draw, layer) are the means over (prefix, unit) of the same
    scores `key_value_hits` gives the activated keys."""
    rng = np.random.default_rng(seed)
    n_units = down_proj.sizes[FFN_UNIT]
    agreement, cosine = np.zeros((n_draws, len(layers))), np.full((n_draws, len(layers)), np.nan)
    labels = list(prefixes.label)
    mean_label = np.mean([embeddings[label] for label in labels], axis=0) if embeddings is not None else None
    for li, layer in enumerate(layers):
        units = rng.integers(0, n_units, size=(n_draws, n_values))
        best = value_top_tokens(lens, np.asarray(down_proj.sel(layer=layer).values), units.ravel(), top, project)
        best = best.reshape(n_draws, n_values, top)
        _embed_tokens(embeddings, lens, best[..., 0])
        for d in range(n_draws):
            agreement[d, li] = np.mean([_agrees(ids, row, lens) for row in prefixes.itertuples() for ids in best[d]])
            if mean_label is not None:  # embeddings are unit vectors: the mean cosine is a dot with the mean label
                words = [_word_embedding(embeddings, lens, ids[0]) for ids in best[d]]
                cosine[d, li] = float(np.mean([w @ mean_label / np.linalg.norm(w) for w in words]))
    return xr.Dataset({"agreement": ((DRAW, LAYER), agreement), "cosine": ((DRAW, LAYER), cosine)},
                      coords={LAYER: layers}, attrs={"n_values": n_values, "n_draws": n_draws})


def value_agreement(keys: xr.DataArray, prefixes: pd.DataFrame, lens: Lens, down_proj: xr.DataArray,
                    embeddings: dict[str, np.ndarray] | None = None, top: int = 3, n_draws: int = 100,
                    seed: int = 0, project: Projector | None = None) -> xr.Dataset:
    """Per layer: `agreement` and `cosine` of the activated keys' values (means over (prefix, key), intervals by a
    cluster bootstrap over prefixes), `agreement_random` / `cosine_random` for random values (mean and central 95%
    of `n_draws` draws), and, when the prefixes say whether the model predicts their label, `agreement_predicted`
    and `agreement_unpredicted` over those two groups. Each as NAME, NAME_low, NAME_high, NAME_n."""
    hits = key_value_hits(keys, prefixes, lens, down_proj, embeddings, top, project)
    random = random_value_hits(prefixes, lens, down_proj, keys.layer.values, embeddings, keys.sizes["rank"], n_draws,
                               top, seed, project)
    layers = keys.layer.values
    groups = {"": np.ones(len(prefixes), bool)}
    if PREDICTED in prefixes:
        predicted = prefixes[PREDICTED].to_numpy(bool)
        groups.update({"_predicted": predicted, "_unpredicted": ~predicted})
    curves = {}
    for suffix, keep in groups.items():
        for name in ("agreement", "cosine") if not suffix else ("agreement",):
            values = hits["agrees" if name == "agreement" else "cosine"].values[keep]  # (prefix, layer, rank)
            owner = np.broadcast_to(np.arange(len(prefixes))[keep][:, None], values[:, 0].shape)
            curves[name + suffix] = intervals.stack(
                [intervals.bootstrap_mean(values[:, li].ravel(), owner.ravel(), seed=seed) for li in range(len(layers))],
                LAYER, layers)
    for name in ("agreement", "cosine"):
        curves[f"{name}_random"] = intervals.stack([intervals.spread(random[name].values[:, li])
                                                    for li in range(len(layers))], LAYER, layers)
    return intervals.as_variables(curves).assign_attrs(top=top, n_prefixes=len(prefixes), n_draws=n_draws,
                                                       random_values_per_layer=keys.sizes["rank"])


def _cosine(a: np.ndarray, b: np.ndarray) -> float:
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


def _token_word(lens: Lens, token: int) -> str:
    return lens.vocabulary[token].strip() or "?"


def _word_embedding(embeddings: dict[str, np.ndarray], lens: Lens, token: int) -> np.ndarray:
    """The embedding of a decoded token's text (stripped; "?" for a blank one), computed once and kept."""
    return _embed_one(embeddings, _token_word(lens, token))


def _embed_tokens(embeddings: dict[str, np.ndarray] | None, lens: Lens, tokens: np.ndarray) -> None:
    """Add the embeddings of the texts of `tokens` that `embeddings` lacks, in one call of the embedder."""
    if embeddings is None:
        return
    missing = sorted({_token_word(lens, int(t)) for t in np.unique(tokens)} - set(embeddings))
    if missing:
        from analyses.label_embeddings import embed_labels

        embeddings.update(zip(missing, embed_labels(missing), strict=True))


def _embed_one(embeddings: dict[str, np.ndarray], word: str) -> np.ndarray:
    if word not in embeddings:
        from analyses.label_embeddings import embed_labels

        embeddings[word] = embed_labels([word])[0]
    return embeddings[word]


def coherent_pairs(table: pd.DataFrame, coherence: pd.DataFrame, lens: Lens, down_proj: xr.DataArray,
                   min_cosine: float = 0.5, min_prefixes: int = 3, top: int = 3,
                   project: Projector | None = None) -> pd.DataFrame:
    """Table 4 style: keys whose top labels are coherent (mean pairwise cosine >= `min_cosine`, at least
    `min_prefixes` prefixes) and whose value's top-`top` tokens name one of those labels."""
    mean_cosine = coherence[coherence[COHERENCE_KIND] == "labels"].groupby([LAYER, "key"]).cosine.mean()
    rows = []
    for record in table.itertuples():
        score = mean_cosine.get((record.layer, record.key))
        if score is None or score < min_cosine or record.n_prefixes < min_prefixes:
            continue
        best = value_top_tokens(lens, np.asarray(down_proj.sel(layer=record.layer).values), np.array([record.key]), top,
                                project)[0]
        tokens = [lens.vocabulary[i] for i in best]
        if any(matches(t, label) for t in tokens for label in record.top_labels):
            rows.append({"key": f"k{record.key}@{record.layer}", "value_top_tokens": tokens,
                         "top_labels": [f"{label} ({share:.1%})" for label, share in zip(record.top_labels, record.shares,
                                                                                         strict=True)],
                         "label_cosine": round(float(score), 3), "n_prefixes": record.n_prefixes})
    return pd.DataFrame(rows, columns=["key", "value_top_tokens", "top_labels", "label_cosine", "n_prefixes"])
