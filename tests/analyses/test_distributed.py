"""Every analysis gives the same results on a dask.distributed cluster (2 worker processes, reached through
`--scheduler ADDRESS` as a SLURM or cloud cluster would be) as on the synchronous scheduler, and its dask chunks
are aligned with the store's chunks."""

from __future__ import annotations

import json
from pathlib import Path

import dask
import numpy as np
import pytest
import xarray as xr

import store.reader
from analyses.__main__ import main

# analysis -> (store fixtures, extra arguments); every analysis of `python -m analyses`
ANALYSES = {
    "token-norms": (["plain_store"], []),
    "variance": (["plain_store"], []),
    "correspondence": (["local_patch_store"], ["--array", "values"]),
    "clustering": (["plain_store"], ["--k", "4", "--saliency", "none"]),
    "logit-lens": (["plain_store"], ["--k", "3"]),
    "ffn-memory": (["prefix_store"], []),
    "norm-attention": (["attention_store"], []),
    "probing": (["plain_store"], ["--text-store", "category_text_store", "--episodes", "5"]),
    "cosine": (["plain_store", "captured_store"], ["--labels", "plain,captured"]),
}


@pytest.fixture(scope="module")
def cluster():
    from dask.distributed import LocalCluster

    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0") as local:
        yield local


def _arguments(name: str, request: pytest.FixtureRequest) -> list[str]:
    stores, extra = ANALYSES[name]
    arguments = [name]
    for fixture in stores:
        arguments += ["--store", str(request.getfixturevalue(fixture))]
    return arguments + [str(request.getfixturevalue(v)) if v.endswith("_store") else v for v in extra]


def _results(folder: Path) -> dict[str, object]:
    """JSON results as data, xarray results as datasets (figures are drawings of these)."""
    found: dict[str, object] = {}
    for path in sorted(folder.rglob("*.json")):
        if not any(part.endswith(".zarr") for part in path.relative_to(folder).parts):
            found[str(path.relative_to(folder))] = json.loads(path.read_text())
    for path in sorted(folder.rglob("*.zarr")):
        found[str(path.relative_to(folder))] = xr.open_zarr(path, consolidated=False).load()
    return found


@pytest.mark.parametrize("name", list(ANALYSES))
def test_a_cluster_gives_the_synchronous_results(name, cluster, request, tmp_path):
    from dask.distributed import Client

    arguments = _arguments(name, request)
    with dask.config.set(scheduler="sync"):
        assert main([*arguments, "--out", str(tmp_path / "sync")]) == 0
    assert main(["--scheduler", cluster.scheduler_address, *arguments, "--out", str(tmp_path / "cluster")]) == 0
    with Client(cluster) as client:  # the work really ran on the cluster
        assert client.run_on_scheduler(lambda dask_scheduler: len(dask_scheduler.task_prefixes)) > 0
    expected, actual = _results(tmp_path / "sync"), _results(tmp_path / "cluster")
    assert expected.keys() == actual.keys() and expected
    for key, value in expected.items():
        if isinstance(value, xr.Dataset):
            xr.testing.assert_identical(value, actual[key])
        else:
            assert value == actual[key], key


def test_dask_chunks_are_aligned_with_store_chunks(plain_store):
    ds = store.reader.open(plain_store)
    for name, variable in ds.data_vars.items():
        encoding = variable.encoding
        unit = encoding.get("shards") or encoding["chunks"]
        for dim, chunks, step in zip(variable.dims, variable.chunks, unit, strict=True):
            boundaries = np.cumsum(chunks)[:-1]
            assert (boundaries % step == 0).all(), f"{name}: {dim} chunks {chunks} cut the store's {step}"
