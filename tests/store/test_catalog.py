"""Catalogs: register from the store, search, open (project API and intake-esm), check, concurrent adds."""

from __future__ import annotations

import json
import multiprocessing
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import zarr

from store import schema
from store.catalog import Catalog, CatalogError, add, read_table, remove

REPO = Path(__file__).resolve().parents[2]


def _variant(source: Path, target: Path, tag: str) -> Path:
    """A copy of a store with a different provenance note: a distinct store (other checksum), still valid."""
    shutil.copytree(source, target)
    root = zarr.open_group(str(target), mode="r+")
    provenance = dict(root.attrs[schema.ATTR_PROVENANCE])
    provenance["note"] = tag
    root.attrs[schema.ATTR_PROVENANCE] = provenance
    return target


@pytest.fixture
def team(tmp_path, captured_store):
    """A repository layout: catalogs/ next to a shared data/ folder holding one store."""
    (tmp_path / "catalogs").mkdir()
    store_path = shutil.copytree(captured_store, tmp_path / "data" / "full.zarr")
    return tmp_path, store_path


def test_add_search_open_with_relative_paths(team, tmp_path_factory):
    root, store_path = team
    row = add(root / "catalogs" / "team", store_path)
    assert row["url"] == "../data/full.zarr" and row["model"] == "tiny-llava-ov" and row["n_captured"] == 6
    assert set(row["arrays"].split(";")) >= {"hidden", "keys", "values", "keys_prerope", "ffn_dense"}
    assert row["layers"] == "0-1" and row["dtype"] == "bfloat16" and len(row["checksum"]) == 64
    catalog = Catalog.read(root / "catalogs" / "team.json")
    found = catalog.search(model="tiny-llava-ov", arrays="keys_prerope")
    assert len(found) == 1 and len(catalog.search(model="other")) == 0
    assert found.open().hidden.dtype.name == "bfloat16"
    # a teammate clones the catalogs next to their own copy of the data folder
    elsewhere = tmp_path_factory.mktemp("teammate")
    shutil.copytree(root / "catalogs", elsewhere / "catalogs")
    shutil.copytree(root / "data", elsewhere / "data")
    moved = Catalog.read(elsewhere / "catalogs" / "team")
    assert moved.location("../data/full.zarr") == str((elsewhere / "data" / "full.zarr").resolve())
    assert moved.search(model="tiny-llava-ov").open().sizes["sample"] == 6
    assert moved.check() == []
    with pytest.raises(CatalogError, match="already in"):
        add(root / "catalogs" / "team", store_path)


def test_intake_esm_opens_and_searches_the_catalog(team):
    import intake

    root, store_path = team
    add(root / "catalogs" / "team", store_path)
    absolute = add(root / "catalogs" / "team", _variant(store_path, root / "data" / "other.zarr", "b"), absolute=True)
    datastore = intake.open_esm_datastore(str(root / "catalogs" / "team.json"))
    assert len(datastore.df) == 2
    hits = datastore.search(model="tiny-llava-ov", dataset="synthetic-coco")
    assert len(hits.df) == 2
    kwargs = {"xarray_open_kwargs": {"consolidated": False, "chunks": {}}, "progressbar": False}
    # a file:// entry opens straight from the catalog file ...
    direct = datastore.search(store_id=absolute["store_id"]).to_dataset_dict(**kwargs)
    assert list(direct.values())[0].sizes["sample"] == 6
    # ... and relative entries through the project's bridge, which resolves them against the catalog
    bridged = Catalog.read(root / "catalogs" / "team").to_intake_esm().to_dataset_dict(**kwargs)
    assert len(bridged) == 2
    ds = next(iter(bridged.values()))
    assert ds.hidden.attrs["logical_dtype"] == "bfloat16"  # plain xarray: raw bf16 bits plus the logical dtype


def test_invalid_store_is_refused_and_check_finds_changes(team):
    root, store_path = team
    broken = shutil.copytree(store_path, root / "data" / "broken.zarr")
    done = zarr.open_array(str(broken / schema.PROGRESS_GROUP / schema.SHARD_COMPLETE), mode="r+")
    done[0] = 0
    with pytest.raises(CatalogError, match="fails validation"):
        add(root / "catalogs" / "team", broken)
    add(root / "catalogs" / "team", store_path)
    moving = add(root / "catalogs" / "team", _variant(store_path, root / "data" / "moving.zarr", "m"))
    assert Catalog.read(root / "catalogs" / "team").check() == []
    changed = zarr.open_group(str(store_path), mode="r+")
    changed.attrs["extra"] = 1
    shutil.rmtree(root / "data" / "moving.zarr")
    problems = Catalog.read(root / "catalogs" / "team").check()
    assert len(problems) == 2
    assert any("changed since it was added" in p for p in problems)
    assert any(moving["store_id"] in p and "not reachable" in p for p in problems)
    assert remove(root / "catalogs" / "team", moving["store_id"]) == 1
    assert len(Catalog.read(root / "catalogs" / "team")) == 1


def test_fsspec_urls(team):
    root, store_path = team
    url = store_path.resolve().as_uri()
    row = add(root / "catalogs" / "urls", url)
    assert row["url"] == url and row["size_bytes"] > 0
    assert Catalog.read(root / "catalogs" / "urls").search(store_id=row["store_id"]).open().sizes["sample"] == 6


def test_malformed_catalogs_name_the_line(team):
    root, store_path = team
    add(root / "catalogs" / "team", store_path)
    csv_path = root / "catalogs" / "team.csv"
    lines = csv_path.read_text().splitlines()
    csv_path.write_text("\n".join([*lines, "abc,def"]) + "\n")
    with pytest.raises(CatalogError, match=r"team.csv:3: 2 fields"):
        Catalog.read(root / "catalogs" / "team")
    fields = lines[1].split(",")
    fields[lines[0].split(",").index("n_samples")] = "many"
    csv_path.write_text("\n".join([lines[0], ",".join(fields)]) + "\n")
    with pytest.raises(CatalogError, match=r"team.csv:2: n_samples must be an integer"):
        read_table(csv_path)
    (root / "catalogs" / "team.json").write_text("{\n  oops")
    with pytest.raises(CatalogError, match=r"team.json:2: not valid JSON"):
        Catalog.read(root / "catalogs" / "team")


def test_selection_columns_are_searchable_and_old_catalogs_read(selection_stores, tmp_path):
    catalog = tmp_path / "catalogs" / "team"
    keys, full = add(catalog, selection_stores["keys"], absolute=True), add(catalog, selection_stores["full"], absolute=True)
    assert (keys["arrays"], keys["streams"]) == ("keys", "") and full["streams"] == "0-2"
    subset = add(catalog, selection_stores["streams"], absolute=True)
    assert (subset["arrays"], subset["streams"]) == ("hidden", "0,2")
    table = Catalog.read(catalog)
    assert len(table.search(arrays="keys")) == 2 and len(table.search(arrays="hidden")) == 2
    assert len(table.search(streams="0,2")) == 1
    csv_path = catalog.with_suffix(".csv")  # a catalog written before the streams column
    old = read_table(csv_path).drop(columns=["streams"])
    old.to_csv(csv_path, index=False)
    assert list(read_table(csv_path)["streams"]) == ["", "", ""]
    assert len(Catalog.read(catalog).search(arrays="keys")) == 2


def _add_worker(args):
    catalog, stores = args
    for path in stores:
        add(catalog, path)


def test_concurrent_adds_lose_nothing(team):
    root, store_path = team
    stores = [_variant(store_path, root / "data" / f"v{i}.zarr", f"v{i}") for i in range(8)]
    catalog = root / "catalogs" / "busy"
    with multiprocessing.get_context("spawn").Pool(4) as pool:
        pool.map(_add_worker, [(catalog, stores[i::4]) for i in range(4)])
    table = Catalog.read(catalog).table
    assert len(table) == 8 and sorted(table.url) == sorted(f"../data/v{i}.zarr" for i in range(8))


def test_cli_and_capture_registration(cache_home, synthetic_root, tmp_path):
    catalog = tmp_path / "catalogs" / "team"
    out = tmp_path / "data" / "demo.zarr"
    env_run = {"cwd": REPO, "capture_output": True, "text": True, "timeout": 300}
    result = subprocess.run([sys.executable, "-m", "capture", "--limit", "2", "--out", str(out), "--catalog", str(catalog),
                             "--no-progress"], **env_run)
    assert result.returncode == 0, result.stderr
    assert "catalog:" in result.stdout
    search = subprocess.run([sys.executable, "-m", "store", "catalog", "search", "model=tiny-llava-ov",
                             "--catalog", str(catalog)], **env_run)
    assert search.returncode == 0 and "../data/demo.zarr" in search.stdout
    opened = subprocess.run([sys.executable, "-m", "store", "catalog", "open", "model=tiny-llava-ov",
                             "--catalog", str(catalog)], **env_run)
    assert opened.returncode == 0 and "sample: 2" in opened.stdout
    missing = subprocess.run([sys.executable, "-m", "store", "catalog", "list", "--catalog", str(tmp_path / "nope")],
                             **env_run)
    assert missing.returncode == 2 and missing.stderr.startswith("error: catalog")
    described = json.loads((tmp_path / "catalogs" / "team.json").read_text())
    assert described["assets"] == {"column_name": "url", "format": "zarr"}
    assert np.isin(["model", "dataset", "checksum"], [a["column_name"] for a in described["attributes"]]).all()
