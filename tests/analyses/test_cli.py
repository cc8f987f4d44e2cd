"""`python -m analyses NAME --store PATH --out DIR`: results and figures for every analysis, clear errors."""

from __future__ import annotations

import json

import xarray as xr

from analyses.__main__ import main

from .conftest import PLANTED_HEADS


def test_variance_cli_writes_the_key_list(planted_variance_store, tmp_path, capsys):
    assert main(["variance", "--store", str(planted_variance_store), "--out", str(tmp_path)]) == 0
    keys = json.loads((tmp_path / "input_agnostic_keys.json").read_text())
    assert sorted(map(tuple, keys["all"])) == sorted(PLANTED_HEADS)
    assert keys["counts"] == {"early": 1, "middle": 0, "late": 1}
    for name in ("key_variance_hist.png", "key_variance_heatmap.png", "key_pca.png"):
        assert (tmp_path / name).stat().st_size > 10_000
    assert xr.open_zarr(tmp_path / "key_variance.zarr", consolidated=False).key_variance.shape == (2, 2)
    assert "peak RSS" in capsys.readouterr().out


def test_correspondence_cli(local_patch_store, tmp_path):
    assert main(["correspondence", "--store", str(local_patch_store), "--out", str(tmp_path), "--array", "values"]) == 0
    summary = json.loads((tmp_path / "correspondence.json").read_text())
    assert summary["semantic"]["best"]["score"] == 1.0 and summary["semantic"]["n_keypoints"] == 32
    assert summary["temporal"]["n_videos"] == 1
    assert (tmp_path / "semantic_pck.png").is_file() and (tmp_path / "temporal_jf.png").is_file()


def test_clustering_and_cosine_cli(plain_store, captured_store, tmp_path):
    assert main(["clustering", "--store", str(plain_store), "--out", str(tmp_path / "c"), "--k", "4"]) == 0
    summary = json.loads((tmp_path / "c" / "clustering.json").read_text())
    assert set(summary["co_segmentation"]) >= {"circle"}
    assert sorted(summary["label_split"]["seen"] + summary["label_split"]["unseen"]) == \
        ["circle", "diamond", "square", "triangle"]
    assert main(["cosine", "--store", str(plain_store), "--store", str(captured_store), "--labels", "all,six",
                 "--out", str(tmp_path / "cos")]) == 0
    curves = json.loads((tmp_path / "cos" / "cosine_curves.json").read_text())["curves"]
    assert set(curves) == {"all", "six"} and len(curves["six"]["mean"]) == 3


def test_errors_are_one_line(plain_store, tmp_path, capsys):
    assert main(["variance", "--store", str(tmp_path / "none.zarr"), "--out", str(tmp_path)]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert main(["correspondence", "--store", str(plain_store), "--out", str(tmp_path)]) == 2
    assert "no keypoint pairs" in capsys.readouterr().err


def test_local_cluster_workers(plain_store, tmp_path):
    assert main(["--workers", "2", "variance", "--store", str(plain_store), "--out", str(tmp_path / "w")]) == 0
    assert main(["variance", "--store", str(plain_store), "--out", str(tmp_path / "t")]) == 0
    one = xr.open_zarr(tmp_path / "w" / "key_variance.zarr", consolidated=False).key_variance.values
    two = xr.open_zarr(tmp_path / "t" / "key_variance.zarr", consolidated=False).key_variance.values
    assert (one == two).all()
