"""The logit lens over a whole store, at scale: the top-k decoded tokens of chosen samples, streams and token set,
computed by the torch `Projector` (CPU threads or CUDA) and written to a Zarr result one block of samples at a
time, each block followed by its done-marker, so that a stopped run resumes where it stopped and gives the same
result as an uninterrupted one.

Result layout: `token_id` (sample, stream, row, k) int64 and `logit` float32, best first; `store_token` (sample,
row) the store's token index of each row; rows past a sample's token count hold -1 / NaN / -1. `block_done` (block,)
marks the blocks written; the request (samples, streams, token set, view, k, block size) is kept in the attributes
and a resumed run must ask for the same.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import ml_dtypes
import numpy as np
import xarray as xr
import zarr

from analyses.lens import Lens
from analyses.tokens import image_tokens_of
from analyses.topk import Projector, torch_device
from store.schema import HIDDEN, KIND, SAMPLE, STREAM, TOKEN, TOKEN_ID, TokenKind, TokenSet

# image: image 0's tokens in the chosen view, newlines excluded (the tokens object hits score); text: text and special
# tokens; last: the last stored token; all: every stored token
TOKEN_SETS = tuple(TokenSet)
ROW, K, BLOCK = "row", "k", "block"
STORE_TOKEN, LOGIT, BLOCK_DONE = "store_token", "logit", "block_done"
REQUEST = "lens_request"  # attribute holding the request as JSON


@dataclass(frozen=True)
class LensRequest:
    """What a lens run computes: `samples` and `streams` (store coordinates), the token set, the image view (for
    the image set), k, and how many samples each written block holds."""

    samples: tuple[int, ...]
    streams: tuple[int, ...]
    token_set: str = TokenSet.IMAGE
    part: str = "auto"
    k: int = 5
    block_samples: int = 8

    def __post_init__(self):
        if self.token_set not in TOKEN_SETS:  # a StrEnum member or its value
            raise ValueError(f"--token-set {self.token_set}: expected one of {', '.join(TOKEN_SETS)}")
        if not self.samples or not self.streams:
            raise ValueError("the lens needs at least one sample and one stream")

    def as_json(self) -> str:
        return json.dumps({**asdict(self), "samples": list(self.samples), "streams": list(self.streams)})


def parse_selection(spec: str, available: list[int], name: str) -> tuple[int, ...]:
    """"all" -> `available`; else comma-separated values and ranges ("0-3,7") among `available`, in store order.
    ValueError naming the option `name` for a malformed spec or a value not available."""
    if spec.strip() == TokenSet.ALL:
        return tuple(int(a) for a in available)
    chosen: set[int] = set()
    try:
        for part in (p.strip() for p in spec.split(",") if p.strip()):
            start, _, stop = part.partition("-") if "-" in part[1:] else (part, "", part)
            chosen.update(range(int(start), int(stop) + 1))
    except ValueError:
        raise ValueError(f"--{name} {spec!r}: expected 'all' or values/ranges like '0-3,7'") from None
    missing = sorted(chosen - set(int(a) for a in available))
    if missing or not chosen:
        raise ValueError(f"--{name} {spec!r}: {missing or 'nothing'} not among the store's {name} "
                         f"({min(available)}..{max(available)})")
    return tuple(int(a) for a in available if int(a) in chosen)


def projector(lens: Lens, device: str = "cpu", dtype: str = "auto", threads: int | None = None) -> Projector:
    """The lens's unembedding on `device`. dtype "auto": bfloat16 on CUDA when the model computes in bfloat16 and the
    unembedding holds bfloat16 values, else float32."""
    place = torch_device(device, threads)
    if dtype == "auto":
        narrow = place.type == "cuda" and lens.dtype == np.dtype(ml_dtypes.bfloat16)
        exact = narrow and np.array_equal(lens.unembedding.astype(ml_dtypes.bfloat16).astype(np.float32), lens.unembedding)
        dtype = "bfloat16" if exact else "float32"
    return Projector(lens.unembedding, lens.bias, place, dtype)


def token_rows(ds: xr.Dataset, samples: list[int], token_set: str, part: str = "auto") -> dict[int, np.ndarray]:
    """Per sample, the store token indices of `token_set`."""
    if token_set == TokenSet.IMAGE:
        return {t.sample: t.positions for t in image_tokens_of(ds, [(s, 0) for s in samples], part)}
    kinds = ds[KIND].isel({SAMPLE: samples}).values
    if token_set == TokenSet.TEXT:
        return {s: np.flatnonzero(np.isin(kinds[i], (TokenKind.TEXT, TokenKind.SPECIAL))) for i, s in enumerate(samples)}
    stored = {s: np.flatnonzero(kinds[i] != TokenKind.PAD) for i, s in enumerate(samples)}
    return {s: found[-1:] for s, found in stored.items()} if token_set == TokenSet.LAST else stored


def run_lens(ds: xr.Dataset, lens: Lens, out: Path, request: LensRequest, project: Projector,
             max_blocks: int | None = None) -> xr.Dataset:
    """Write (or resume) the top tokens of `request` at `out`; compute at most `max_blocks` blocks in this call
    (None: all). Returns the result as written so far: the samples of blocks not yet done hold zeros, as `block_done`
    says."""
    rows = token_rows(ds, list(request.samples), request.token_set, request.part)
    if not any(len(r) for r in rows.values()):
        raise ValueError(f"no {request.token_set} tokens in the chosen samples")
    blocks = _open_or_create(out, request, max(len(r) for r in rows.values()))
    done = zarr.open_array(str(out / BLOCK_DONE), mode="r")[:]
    todo = [b for b in range(len(blocks)) if not done[b]][:max_blocks]
    stream_index = [list(ds[STREAM].values).index(s) for s in request.streams]
    for b in todo:
        _write_block(ds, lens, out, request, project, blocks[b], rows, stream_index)
        xr.Dataset({BLOCK_DONE: (BLOCK, [True])}).to_zarr(out, region={BLOCK: slice(b, b + 1)}, consolidated=False)
    return xr.open_zarr(out, consolidated=False)


def _open_or_create(out: Path, request: LensRequest, n_rows: int) -> list[slice]:
    """The sample blocks of `request`; the empty result written first when `out` does not exist, and an existing
    one checked to hold the same request."""
    n, size = len(request.samples), request.block_samples
    blocks = [slice(start, min(start + size, n)) for start in range(0, n, size)]
    if out.exists():
        found = xr.open_zarr(out, consolidated=False).attrs.get(REQUEST)
        if found != request.as_json():
            raise ValueError(f"{out}: holds a lens run of another request ({found}); remove it or choose another --out")
        return blocks
    import dask.array as da

    shape, chunks = (n, len(request.streams), n_rows, request.k), (size, len(request.streams), n_rows, request.k)
    template = xr.Dataset(
        {TOKEN_ID: ((SAMPLE, STREAM, ROW, K), da.full(shape, -1, dtype=np.int64, chunks=chunks)),
         LOGIT: ((SAMPLE, STREAM, ROW, K), da.full(shape, np.nan, dtype=np.float32, chunks=chunks)),
         STORE_TOKEN: ((SAMPLE, ROW), da.full((n, n_rows), -1, dtype=np.int64, chunks=(size, n_rows))),
         BLOCK_DONE: (BLOCK, da.zeros(len(blocks), dtype=bool, chunks=1))},
        coords={SAMPLE: list(request.samples), STREAM: list(request.streams)}, attrs={REQUEST: request.as_json()})
    template.to_zarr(out, compute=False, consolidated=False)
    zarr.open_array(str(out / BLOCK_DONE), mode="r+")[:] = False  # the fill value, written: every block to do
    return blocks


def _write_block(ds: xr.Dataset, lens: Lens, out: Path, request: LensRequest, project: Projector, block: slice,
                 rows: dict[int, np.ndarray], stream_index: list[int]) -> None:
    """Compute and write one block of samples, one (sample, stream) at a time: at llava-ov-7b's size one sample's
    image tokens over 29 streams are 0.6 GB in bf16, one stream's normalised queries 42 MB."""
    samples = request.samples[block]
    n_rows, n_streams, k = max(len(r) for r in rows.values()), len(stream_index), request.k
    ids = np.full((len(samples), n_streams, n_rows, k), -1, np.int64)
    logits = np.full(ids.shape, np.nan, np.float32)
    positions = np.full((len(samples), n_rows), -1, np.int64)
    for i, s in enumerate(samples):
        n = len(rows[s])
        positions[i, :n] = rows[s]
        if not n:
            continue
        hidden = np.asarray(ds[HIDDEN].isel({SAMPLE: s, STREAM: stream_index, TOKEN: rows[s]}).values)
        for j in range(n_streams):
            ids[i, j, :n], logits[i, j, :n] = project.top_k(lens.normalise(hidden[j]), k)
    region = {SAMPLE: slice(block.start, block.stop)}
    xr.Dataset({TOKEN_ID: ((SAMPLE, STREAM, ROW, K), ids), LOGIT: ((SAMPLE, STREAM, ROW, K), logits),
                STORE_TOKEN: ((SAMPLE, ROW), positions)}).to_zarr(out, region=region, consolidated=False)
