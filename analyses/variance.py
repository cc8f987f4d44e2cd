"""Input-agnostic image keys (Liu et al. §3.2, A.6.1).

For every (layer, KV head), the L2 variance of its image key tokens across samples at matching token
positions (sum over head_dim of the per-dimension variance, averaged over positions), computed out of
core by dask. Liu et al. find the distribution over (layer, head) bimodal and put the threshold in the
valley between the modes; keys below it are input-agnostic. Here Hartigan's dip test (the `diptest`
package) decides first whether the distribution is bimodal at all: if it is not, no key is flagged by
default (Otsu's split or a valley would still cut a unimodal distribution in two).

Positions match by (image part, grid row, grid col) within image 0: by default the base view, which every
family lays out at the same sequence positions for a given prompt. Post-RoPE keys (`keys`) of one cell at
different sequence positions in different samples carry different rotations, which would add to their
variance: `key_variance` refuses them (use `keys_prerope`).
"""

from __future__ import annotations

from dataclasses import dataclass

import dask.array as da
import diptest
import numpy as np
import xarray as xr
from scipy import ndimage

from analyses.tokens import FEATURE, as_units, captured_samples
from store.schema import (
    GRID_COL,
    GRID_ROW,
    IMAGE_INDEX,
    IMAGE_PART,
    KEYS,
    KEYS_PREROPE,
    KIND,
    KV_HEAD,
    LAYER,
    POSITION,
    SAMPLE,
    TOKEN,
    ImagePart,
    TokenKind,
)

AUTO = "auto"  # the valley when the dip test finds the distribution bimodal, else no threshold
THRESHOLD_METHODS = (AUTO, "valley", "otsu")
DIP_ALPHA = 0.05  # bimodal when Hartigan's dip test rejects unimodality at this level
# Liu et al. group LLaVA-OneVision-7B's 28 layers as 8 early, 10 middle, 10 late.
PAPER_GROUP_FRACTIONS = (8 / 28, 10 / 28)
# The key list (`input_agnostic_keys`, written as input_agnostic_keys.json and read by interventions.spec):
FLAGGED_BY_GROUP = KEYS  # {group: [{layer, kv_head, variance}, ...]}
ALL_FLAGGED = "all"  # [[layer, kv_head], ...] of every group
LAYER_GROUPS = "layer_groups"  # {group: [layer, ...]}: the layers each group holds, flagged or not
MEASURED_PART = "part"  # the image tokens whose variance was measured: base, grid or all (image 0, no newlines)
PART_NAMES = {ImagePart.BASE: "base", ImagePart.GRID: "grid", None: "all"}


def matched_positions(ds: xr.Dataset, part: ImagePart | None = ImagePart.BASE) -> tuple[np.ndarray, np.ndarray, list]:
    """(samples, positions, cells): the captured samples, and for each the token positions of the image
    cells (part, grid_row, grid_col) of image 0 that every one of them has; positions is (samples, cells)."""
    samples = captured_samples(ds)
    if len(samples) < 2:
        raise ValueError("key variance needs at least 2 captured samples")
    table = ds[[KIND, IMAGE_INDEX, IMAGE_PART, GRID_ROW, GRID_COL]].isel(sample=samples).compute()
    image = (table.kind.values == TokenKind.IMAGE) & (table.image_index.values == 0)
    if part is not None:
        image &= table.image_part.values == part
    # one int64 per cell (part, row, col), so that matching is sorting and searching, not Python loops
    cell = ((table.image_part.values.astype(np.int64) + 1) << 32 | (table.grid_row.values.astype(np.int64) + 1) << 16
            | (table.grid_col.values.astype(np.int64) + 1))
    common = None
    for row in range(len(samples)):
        found = np.unique(cell[row, image[row]])
        common = found if common is None else np.intersect1d(common, found, assume_unique=True)
    if not len(common):
        raise ValueError("the samples share no image token cells (store captured with --tokens that exclude images?)")
    positions = np.empty((len(samples), len(common)), dtype=np.int64)
    for row in range(len(samples)):
        where = np.flatnonzero(image[row])
        order = np.argsort(cell[row, where], kind="stable")
        last = np.searchsorted(cell[row, where][order], common, side="right") - 1  # the last token of a repeated cell
        positions[row] = where[order[last]]
    cells = [((int(c) >> 32) - 1, ((int(c) >> 16) & 0xFFFF) - 1, (int(c) & 0xFFFF) - 1) for c in common]
    return samples, positions, cells


def rotation_mismatch(ds: xr.Dataset, samples: np.ndarray, positions: np.ndarray) -> int:
    """How many matched cells sit at different sequence positions (the token table's `position`) in different
    samples: their post-RoPE keys are rotated by different angles."""
    sequence = ds[POSITION].isel(sample=xr.DataArray(samples, dims=SAMPLE),
                                 token=xr.DataArray(positions, dims=(SAMPLE, "cell"))).values
    return int((sequence != sequence[0]).any(axis=0).sum())


def key_variance(ds: xr.Dataset, array: str = KEYS, part: ImagePart | None = ImagePart.BASE,
                 allow_rotated: bool = False) -> xr.DataArray:
    """L2 variance across samples of each (layer, kv_head)'s image keys: (layer, kv_head) float64, lazy.

    Variance per dimension across samples at each matched position, summed over head_dim, then averaged
    over positions. `array` may be `keys` (post-RoPE, as cached), `keys_prerope` or `values`. Post-RoPE keys
    whose cells sit at different sequence positions in different samples are refused unless `allow_rotated`
    (e.g. families whose rotary positions follow the image grid rather than the sequence).
    """
    samples, positions, _ = matched_positions(ds, part)
    if array == KEYS and not allow_rotated:
        mismatched = rotation_mismatch(ds, samples, positions)
        if mismatched:
            raise ValueError(
                f"{mismatched} of {positions.shape[1]} matched image cells sit at different sequence positions in "
                f"different samples, so their post-RoPE keys differ by rotation as well as content: capture with "
                f"--keys-prerope and measure --array {KEYS_PREROPE} (or --part base with prompts of one length)")
    data = as_units(ds[array])
    if (positions == positions[0]).all():  # same layout everywhere: orthogonal indexing, cheaper than pointwise
        first = positions[0]
        contiguous = np.array_equal(first, np.arange(first[0], first[0] + len(first)))
        tokens = data.isel(sample=samples, token=slice(first[0], first[0] + len(first)) if contiguous else first)
    else:
        tokens = data.isel(sample=xr.DataArray(samples, dims=SAMPLE),
                           token=xr.DataArray(positions, dims=(SAMPLE, "cell")))
        tokens = tokens.rename(cell=TOKEN)
    tokens = tokens.transpose(SAMPLE, LAYER, KV_HEAD, TOKEN, FEATURE)
    sums = _shifted_sums(tokens.data)  # (2, layer, kv_head, token, feature)
    n = tokens.sizes[SAMPLE]
    per_position = xr.DataArray(sums[1] / n - (sums[0] / n) ** 2, dims=tokens.dims[1:],
                                coords={d: tokens.coords[d] for d in (LAYER, KV_HEAD) if d in tokens.coords})
    return per_position.sum(FEATURE).mean(TOKEN).rename("key_variance").assign_attrs(
        array=array, n_samples=len(samples), n_positions=positions.shape[1], **{MEASURED_PART: PART_NAMES[part]})


SAMPLES_PER_FLOAT32_SUM = 64


def _shifted_sums(vectors: da.Array | np.ndarray) -> da.Array:
    """Sums over samples of d and d**2, d = vectors - vectors[0]: (2, *vectors.shape[1:]) float64, lazy.

    Instead of xarray's var (dask's moment tree: 3x slower). Shifting by the first sample keeps the sums exact
    enough when a key's mean dwarfs its spread, which is just the input-agnostic case. For 16-bit stores the
    differences (exact in float32) are summed in float32 over at most 64 samples, then in float64: half the
    memory traffic of float64 throughout, within 1e-6 of it.
    """
    if not isinstance(vectors, da.Array):  # in-memory data: blocks of samples, whole along every other axis
        vectors = da.from_array(vectors, chunks=(SAMPLES_PER_FLOAT32_SUM,) + (-1,) * (vectors.ndim - 1))
    work = np.float32 if vectors.dtype.itemsize <= 2 else np.float64
    shift = vectors[0].astype(work)
    per_block = da.map_blocks(_block_sums, vectors, shift, work=work, dtype=np.float64,
                              chunks=((1,) * vectors.numblocks[0], (2,), *vectors.chunks[1:]), new_axis=1)
    return per_block.sum(axis=0)


def _block_sums(block: np.ndarray, shift: np.ndarray, work: type) -> np.ndarray:
    """(1, 2, ...) float64: the sums of d and d**2 over the samples of one block."""
    totals = np.zeros((2, *block.shape[1:]), np.float64)
    for start in range(0, len(block), SAMPLES_PER_FLOAT32_SUM):
        shifted = block[start : start + SAMPLES_PER_FLOAT32_SUM].astype(work)
        shifted -= shift
        totals[0] += shifted.sum(axis=0)
        np.square(shifted, out=shifted)
        totals[1] += shifted.sum(axis=0)
    return totals[None]


@dataclass(frozen=True)
class Bimodality:
    """Hartigan's dip test of the variance distribution: the dip statistic, its p-value against unimodality
    (interpolated from the tabulated critical values) and the verdict at DIP_ALPHA."""

    dip: float
    p_value: float
    n: int

    @property
    def bimodal(self) -> bool:
        return self.p_value < DIP_ALPHA

    def as_dict(self) -> dict:
        return {"test": "Hartigan's dip test", "dip": self.dip, "p_value": self.p_value, "n": self.n,
                "alpha": DIP_ALPHA, "bimodal": self.bimodal}


def bimodality(values: np.ndarray) -> Bimodality:
    """Hartigan's dip test of `values` (any shape, flattened)."""
    values = np.asarray(values, dtype=np.float64).ravel()
    dip, p_value = diptest.diptest(values)
    return Bimodality(float(dip), float(p_value), len(values))


@dataclass(frozen=True)
class Threshold:
    """The variance below which keys are flagged; `value` None flags nothing (the automatic choice on a
    distribution the dip test does not find bimodal)."""

    value: float | None
    method: str
    otsu: float
    valley: float | None
    bimodality: Bimodality

    def as_dict(self) -> dict:
        return {"value": self.value, "method": self.method, "otsu": self.otsu, "valley": self.valley,
                "bimodality": self.bimodality.as_dict()}


def choose_threshold(variance: np.ndarray, method: str = AUTO, value: float | None = None, bins: int = 30) -> Threshold:
    """The split of the variance distribution. `auto`: the histogram valley (lowest smoothed bin between the
    two highest peaks, Liu et al.'s choice) when the dip test finds the distribution bimodal, Otsu's threshold
    when it is bimodal but the histogram shows no valley, and no threshold when it is not bimodal. `valley` or
    `otsu` force that split (the valley falls back to Otsu without one); a user `value` overrides all."""
    values = np.asarray(variance, dtype=np.float64).ravel()
    if method not in THRESHOLD_METHODS:
        raise ValueError(f"unknown threshold method {method!r} (choose from {', '.join(THRESHOLD_METHODS)})")
    otsu, valley, test = otsu_threshold(values), histogram_valley(values, bins), bimodality(values)
    if value is not None:
        return Threshold(float(value), "user", otsu, valley, test)
    if method == AUTO and not test.bimodal:
        return Threshold(None, "none: not bimodal", otsu, valley, test)
    if method in (AUTO, "valley") and valley is not None:
        return Threshold(valley, "valley", otsu, valley, test)
    return Threshold(otsu, "otsu", otsu, valley, test)


def otsu_threshold(values: np.ndarray) -> float:
    """Otsu's threshold computed exactly on the sorted values: the split maximising the between-class variance,
    placed midway between the two values it separates.

    skimage's `threshold_otsu` bins the values first and returns a bin centre, which for the ~100 keys of a
    model can fall inside the lower mode; with this few values the exact split costs nothing.
    """
    x = np.sort(np.asarray(values, dtype=np.float64).ravel())
    if len(x) < 2 or x[0] == x[-1]:
        return float(x[0])
    n = np.arange(1, len(x))  # size of the lower class for a split after position n-1
    lower_mean = np.cumsum(x)[:-1] / n
    upper_mean = (x.sum() - np.cumsum(x)[:-1]) / (len(x) - n)
    between = n * (len(x) - n) * (lower_mean - upper_mean) ** 2
    between[x[1:] == x[:-1]] = -1  # a split must fall between distinct values
    best = int(np.argmax(between))
    return float((x[best] + x[best + 1]) / 2)


def histogram_valley(values: np.ndarray, bins: int = 30) -> float | None:
    """Centre of the lowest (lightly smoothed) histogram bin between its two highest peaks; None when the
    histogram has fewer than two peaks."""
    if np.ptp(values) == 0:
        return None
    counts, edges = np.histogram(values, bins=bins)
    smooth = ndimage.gaussian_filter1d(counts.astype(np.float64), sigma=1.0, mode="constant")
    padded = np.concatenate([[-np.inf], smooth, [-np.inf]])
    peaks = [i for i in range(len(smooth))
             if padded[i + 1] > padded[i] and padded[i + 1] >= padded[i + 2] and smooth[i] >= 0.05 * smooth.max()]
    if len(peaks) < 2:
        return None
    first, second = sorted(sorted(peaks, key=lambda i: smooth[i])[-2:])
    low = first + int(np.argmin(smooth[first:second + 1]))
    return float((edges[low] + edges[low + 1]) / 2)


def layer_groups(layers: list[int], boundaries: tuple[int, int] | None = None) -> dict[str, list[int]]:
    """Early / middle / late layers: split at `boundaries` (first middle layer, first late layer), or in the
    paper's 8 : 10 : 10 proportions of a 28-layer model."""
    layers = sorted(layers)
    if boundaries is None:
        n = len(layers)
        first_middle = round(n * PAPER_GROUP_FRACTIONS[0])
        first_late = round(n * (PAPER_GROUP_FRACTIONS[0] + PAPER_GROUP_FRACTIONS[1]))
        boundaries = tuple(layers[i] if i < n else layers[-1] + 1 for i in (first_middle, first_late))
    middle, late = boundaries
    return {"early": [i for i in layers if i < middle], "middle": [i for i in layers if middle <= i < late],
            "late": [i for i in layers if i >= late]}


def input_agnostic_keys(variance: xr.DataArray, threshold: Threshold,
                        groups: dict[str, list[int]] | None = None) -> dict:
    """The (layer, kv_head) keys below the threshold (none when its value is None), grouped early / middle /
    late: a JSON-able dict that an intervention can consume (see FLAGGED_BY_GROUP and ALL_FLAGGED)."""
    groups = groups or layer_groups([int(v) for v in variance.layer.values])
    flagged = {name: [] for name in groups}
    for layer in variance.layer.values:
        for head in variance.kv_head.values:
            value = float(variance.sel(layer=layer, kv_head=head))
            if threshold.value is not None and value < threshold.value:
                group = next(name for name, members in groups.items() if int(layer) in members)
                flagged[group].append({LAYER: int(layer), KV_HEAD: int(head), "variance": value})
    values = variance.values.ravel()
    cross_check = None
    if threshold.valley is not None:  # do Otsu and the valley split the keys the same way?
        cross_check = bool(np.array_equal(values < threshold.otsu, values < threshold.valley))
    return {
        "threshold": threshold.as_dict(),
        "otsu_and_valley_agree": cross_check,
        "array": variance.attrs.get("array"),
        MEASURED_PART: variance.attrs.get(MEASURED_PART),
        "n_samples": variance.attrs.get("n_samples"),
        LAYER_GROUPS: groups,
        "counts": {name: len(keys) for name, keys in flagged.items()},
        FLAGGED_BY_GROUP: flagged,
        ALL_FLAGGED: [[k[LAYER], k[KV_HEAD]] for name in groups for k in flagged[name]],
    }


def key_pca(ds: xr.Dataset, samples: tuple[int, int], array: str = KEYS,
            part: ImagePart | None = ImagePart.BASE) -> xr.DataArray:
    """2-D PCA of every (layer, kv_head) image key of two samples (Fig. 4): each key of each sample is its
    matched image tokens' vectors concatenated. Returns (sample, layer, kv_head, component)."""
    from sklearn.decomposition import PCA

    all_samples, positions, _ = matched_positions(ds, part)
    rows = [int(np.flatnonzero(all_samples == s)[0]) for s in samples]
    data = as_units(ds[array])
    stacked = []
    for sample, row in zip(samples, rows, strict=True):
        vectors = data.isel(sample=sample, token=positions[row]).astype(np.float32).values  # (L, H, cells, feat)
        stacked.append(vectors.reshape(vectors.shape[0], vectors.shape[1], -1))
    matrix = np.stack(stacked)  # (2, L, H, cells*feat)
    flat = matrix.reshape(-1, matrix.shape[-1])
    components = PCA(n_components=2, random_state=0).fit_transform(flat).reshape(*matrix.shape[:3], 2)
    return xr.DataArray(components, dims=(SAMPLE, LAYER, KV_HEAD, "component"),
                        coords={SAMPLE: list(samples), LAYER: data.layer.values, KV_HEAD: data.kv_head.values,
                                "component": [1, 2]}, name="key_pca")
