"""FFN layers as key-value memories (Jung et al. §4; Geva et al.), from a store of visual prefixes.

A visual prefix is a bbox prompt cut right before its label (`--template bbox --visual-prefix`), so the next
token is the label. At the prefix's last position, the largest FFN memory coefficients (inputs of down_proj)
name the most activated keys of each layer; the value of key j is column j of down_proj.

- keys: per layer the top-3 keys of each prefix; per key the distribution of its prefixes' labels;
- coherence: pairwise cosine of a key's top-3 labels' text embeddings, against random label triples;
- values: each activated key's value projected through the unembedding; its top-3 tokens agree with the
  prefix's label (the label's first token), and the top token's embedding is compared with the label's,
  against random value vectors.
"""

from __future__ import annotations

from collections import Counter
from itertools import combinations

import numpy as np
import pandas as pd
import xarray as xr

from analyses.lens import Lens, matches
from analyses.tokens import captured_samples, sample_annotation
from store import annotation as ann
from store.schema import FFN_K, FFN_UNIT, LAYER, SAMPLE

# label_coherence's column telling the two samples of cosines apart: labels (a key's top labels) or random (the
# baseline). Not a token kind: the name only coincides with schema.KIND, and is kept so label_coherence.csv is unchanged
COHERENCE_KIND = "kind"
LAST_ROW = "last"  # prefix_labels' column: the row of the prefix's last stored token


def prefix_labels(ds: xr.Dataset) -> pd.DataFrame:
    """Per captured sample: its label, the id of the label's first token (`next_token_id`, when the capture cut a
    visual prefix) and the row of its last stored token. Samples without an object label are left out."""
    rows = []
    for sample in captured_samples(ds):
        annotation = sample_annotation(ds, sample)
        label = (annotation.get(ann.OBJECT) or {}).get(ann.LABEL) or annotation.get(ann.LABEL)
        if label is None:
            continue
        rows.append({SAMPLE: int(sample), ann.LABEL: str(label), ann.NEXT_TOKEN_ID: annotation.get(ann.NEXT_TOKEN_ID),
                     LAST_ROW: int(ds.n_tokens.values[sample]) - 1})
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


def value_logits(lens: Lens, down_proj: np.ndarray, keys: np.ndarray) -> np.ndarray:
    """(n_keys, vocab) unembedding @ down_proj[:, j] for each key j; `down_proj` is one layer's (d_model, ffn_unit)."""
    values = down_proj[:, keys].astype(np.float32)  # (d_model, n_keys)
    out = (lens.unembedding @ values).T
    return out + lens.bias if lens.bias is not None else out


def value_agreement(keys: xr.DataArray, prefixes: pd.DataFrame, lens: Lens, down_proj: xr.DataArray,
                    embeddings: dict[str, np.ndarray] | None = None, top: int = 3, seed: int = 0) -> xr.Dataset:
    """Per layer, over all (prefix, activated key) pairs: `agreement`, the share whose value's top-`top` tokens
    include the prefix's label (its first token id when known, else a token naming it), and `cosine`, the
    embedding cosine between the value's top token and the label; `*_random` the same for random value vectors
    (uniformly drawn FFN units). Needs the label embeddings `embeddings` for the cosines."""
    rng = np.random.default_rng(seed)
    n_units = down_proj.sizes[FFN_UNIT]
    layers = keys.layer.values
    out = {name: np.zeros(len(layers)) for name in ("agreement", "agreement_random", "cosine", "cosine_random")}
    for li, layer in enumerate(layers):
        weights = np.asarray(down_proj.sel(layer=layer).values)
        chosen = keys.values[:, li, :]
        random = rng.integers(0, n_units, size=chosen.shape)
        for kind, units in (("", chosen), ("_random", random)):
            logits = value_logits(lens, weights, units.ravel())
            best = np.argsort(-logits, axis=1)[:, :top].reshape(*units.shape, top)
            agree, cosines = [], []
            for p, row in enumerate(prefixes.itertuples()):
                for r in range(units.shape[1]):
                    ids = best[p, r]
                    if row.next_token_id is not None and not pd.isna(row.next_token_id):
                        agree.append(int(row.next_token_id) in ids)
                    else:
                        agree.append(any(matches(lens.vocabulary[i], row.label) for i in ids))
                    if embeddings is not None:
                        word = lens.vocabulary[ids[0]].strip() or "?"
                        cosines.append(_cosine(_embed_one(embeddings, word), embeddings[row.label]))
            out[f"agreement{kind}"][li] = np.mean(agree)
            out[f"cosine{kind}"][li] = np.mean(cosines) if cosines else np.nan
    return xr.Dataset({k: (LAYER, v) for k, v in out.items()}, coords={LAYER: layers},
                      attrs={"top": top, "n_prefixes": len(prefixes)})


def _cosine(a: np.ndarray, b: np.ndarray) -> float:
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


def _embed_one(embeddings: dict[str, np.ndarray], word: str) -> np.ndarray:
    if word not in embeddings:
        from analyses.label_embeddings import embed_labels

        embeddings[word] = embed_labels([word])[0]
    return embeddings[word]


def coherent_pairs(table: pd.DataFrame, coherence: pd.DataFrame, lens: Lens, down_proj: xr.DataArray,
                   min_cosine: float = 0.5, min_prefixes: int = 3, top: int = 3) -> pd.DataFrame:
    """Table 4 style: keys whose top labels are coherent (mean pairwise cosine >= `min_cosine`, at least
    `min_prefixes` prefixes) and whose value's top-`top` tokens name one of those labels."""
    mean_cosine = coherence[coherence[COHERENCE_KIND] == "labels"].groupby([LAYER, "key"]).cosine.mean()
    rows = []
    for record in table.itertuples():
        score = mean_cosine.get((record.layer, record.key))
        if score is None or score < min_cosine or record.n_prefixes < min_prefixes:
            continue
        logits = value_logits(lens, np.asarray(down_proj.sel(layer=record.layer).values), np.array([record.key]))[0]
        tokens = [lens.vocabulary[i] for i in np.argsort(-logits)[:top]]
        if any(matches(t, label) for t in tokens for label in record.top_labels):
            rows.append({"key": f"k{record.key}@{record.layer}", "value_top_tokens": tokens,
                         "top_labels": [f"{label} ({share:.1%})" for label, share in zip(record.top_labels, record.shares,
                                                                                         strict=True)],
                         "label_cosine": round(float(score), 3), "n_prefixes": record.n_prefixes})
    return pd.DataFrame(rows, columns=["key", "value_top_tokens", "top_labels", "label_cosine", "n_prefixes"])
