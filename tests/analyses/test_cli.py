"""`python -m analyses NAME --store PATH --out DIR`: results and figures for every analysis, clear errors."""

from __future__ import annotations

import json

import numpy as np
import pytest
import xarray as xr

import store.reader
from analyses import variance
from analyses.__main__ import main
from store.schema import KEYS, ImagePart

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
    semantic = summary["semantic"]
    assert semantic["max_in_sample"]["score"] == 1.0 and semantic["n_keypoints"] == 32
    assert semantic["best"]["estimate"] == 1.0 and semantic["best"]["n"] == 1  # one pair chooses, one reports
    assert semantic["pck"]["estimate"][0][0] == 1.0 and semantic["pck"]["n"][0][0] == 2
    assert semantic["pck"]["low"][0][0] == semantic["pck"]["high"][0][0] == 1.0
    assert semantic["baseline"]["representation"].endswith("(stream 0)") and semantic["baseline"]["n"] == 1
    temporal = summary["temporal"]
    assert temporal["n_videos"] == 1 and max(map(max, temporal["JF"]["estimate"])) == temporal["max_in_sample"]["score"]
    assert temporal["JF"]["n"][0][0] == 1 and temporal["best"]["n"] == 0  # one video chooses the head, none reports
    assert (tmp_path / "semantic_pck.png").is_file() and (tmp_path / "temporal_jf.png").is_file()


def test_clustering_and_cosine_cli(plain_store, captured_store, tmp_path, capsys):
    assert main(["clustering", "--store", str(plain_store), "--out", str(tmp_path / "c"), "--k", "4"]) == 2
    assert "--attention-last" in capsys.readouterr().err  # no saliency: the store has no attention rows
    assert main(["clustering", "--store", str(plain_store), "--out", str(tmp_path / "c"), "--k", "4",
                 "--saliency", "none"]) == 0
    summary = json.loads((tmp_path / "c" / "clustering.json").read_text())
    segmentation = summary["co_segmentation"]
    assert set(segmentation["sets"]) == {"circle", "diamond", "square", "triangle"}
    circles = len(segmentation["sets"]["circle"]["samples"])
    assert segmentation["best"]["reported_on"] == "report" and segmentation["best"]["n"] == 2 + 1 + 2 + 4
    assert circles == 5 and segmentation["baseline"]["n"] == segmentation["best"]["n"]
    assert sorted(summary["label_split"]["seen"] + summary["label_split"]["unseen"]) == \
        ["circle", "diamond", "square", "triangle"]
    assert main(["cosine", "--store", str(plain_store), "--store", str(captured_store), "--labels", "all,six",
                 "--out", str(tmp_path / "cos")]) == 0
    curves = json.loads((tmp_path / "cos" / "cosine_curves.json").read_text())["curves"]
    assert set(curves) == {"all", "six"} and len(curves["six"]["image_text"]["mean"]) == 3
    assert set(curves["six"]) == {"store", "image_text", "image_template", "image_image", "text_text",
                                  "image_text_centred"}
    assert curves["six"]["image_text"]["n_samples"] == [6, 6, 6] and len(curves["six"]["text_text"]["low"]) == 3


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


def test_logit_lens_cli(plain_store, tmp_path):
    assert main(["logit-lens", "--store", str(plain_store), "--out", str(tmp_path), "--k", "3"]) == 0
    summary = json.loads((tmp_path / "logit_lens.json").read_text())
    assert len(summary["hit_rate"]) == len(summary["streams"]) == 3 and summary["n_object_tokens"] > 0
    best = summary["per_image_best"]
    assert best["rate"]["n"] == summary["n_images"] == 12 and best["permuted_label_baseline"]["n"] == 12
    assert len(summary["pooled_permuted_label_baseline"]["low"]) == 3 and summary["caption_words"]["recall"]["n"]
    assert main(["logit-lens", "--store", str(plain_store), "--out", str(tmp_path / "small"), "--max-area", "1"]) == 0
    assert json.loads((tmp_path / "small" / "logit_lens.json").read_text())["n_object_tokens"] == 0
    assert len(summary["top_tokens_first_samples"]["0"]["0"][0]) == 3
    assert list(tmp_path.glob("decoded_grid_sample0_stream*.png")) and (tmp_path / "logit_lens_scores.png").is_file()


def test_logit_lens_cli_selects_samples_streams_and_token_sets(plain_store, tmp_path):
    out = tmp_path / "last"
    arguments = ["logit-lens", "--store", str(plain_store), "--out", str(out), "--k", "2", "--samples", "1-3",
                 "--streams", "0,2", "--token-set", "last", "--threads", "1", "--block-samples", "2"]
    assert main(arguments) == 0
    top = xr.open_zarr(out / "top_tokens.zarr", consolidated=False)
    assert top.sample.values.tolist() == [1, 2, 3] and top.stream.values.tolist() == [0, 2]
    assert top.token_id.shape == (3, 2, 1, 2) and top.block_done.values.tolist() == [True, True]
    n_tokens = store.reader.open(plain_store).n_tokens.values
    assert top.store_token.values[:, 0].tolist() == (n_tokens[1:4] - 1).tolist()
    assert json.loads((out / "logit_lens.json").read_text())["token_set"] == "last"
    assert main(arguments) == 0  # a rerun finds every block done and recomputes nothing
    assert main([*arguments[:-4], "--block-samples", "3"]) == 2  # another request in the same folder: refused
    assert main([*arguments[:4], str(tmp_path / "s"), "--streams", "7-9"]) == 2


def test_ffn_memory_cli(prefix_store, tmp_path):
    assert main(["ffn-memory", "--store", str(prefix_store), "--out", str(tmp_path)]) == 0
    summary = json.loads((tmp_path / "ffn_memory.json").read_text())
    assert summary["n_prefixes"] == 12 and len(summary["agreement"]) == 2
    assert summary["intervals"]["agreement"]["n"] == [12, 12] and summary["intervals"]["agreement_random"]["n"] == [100, 100]
    assert summary["model_predicts_label"] is None  # the fixture keeps no next tokens
    for name in ("key_labels.csv", "label_coherence.csv", "coherent_pairs.md", "value_agreement.png"):
        assert (tmp_path / name).is_file()


def test_norm_attention_cli(attention_store, plain_store, tmp_path, capsys):
    assert main(["norm-attention", "--store", str(attention_store), "--out", str(tmp_path)]) == 0
    summary = json.loads((tmp_path / "norm_attention.json").read_text())
    for share in ("norm_share", "weight_share", "token_share"):  # (kind, layer), each a share of the whole row
        np.testing.assert_allclose(np.array(summary[share]).sum(axis=0), 1.0, rtol=1e-5)
    image = summary["intervals"]["image"]["norm_share"]
    assert image["n"] == [3, 3] and all(lo <= e <= hi for lo, e, hi in zip(image["low"], image["estimate"], image["high"],
                                                                           strict=True))
    assert (tmp_path / "norm_attention_sample0.png").is_file()
    assert main(["norm-attention", "--store", str(plain_store), "--out", str(tmp_path / "x")]) == 2
    assert "--attention-last" in capsys.readouterr().err


def test_probing_cli(plain_store, category_text_store, correspondence_store, tmp_path):
    assert main(["probing", "--store", str(plain_store), "--text-store", str(category_text_store), "--episodes", "10",
                 "--out", str(tmp_path / "p")]) == 0
    summary = json.loads((tmp_path / "p" / "probing.json").read_text())
    assert "linear_probe" in summary and "text_segmentation" in summary
    probe = summary["linear_probe"]
    assert probe["labels"] == ["triangle"] and probe["shots"] == 5  # the one synthetic class in 7+ images
    assert probe["best"]["reported_on"] == "report" and probe["best"]["n"] == 10 and probe["baseline"]["n"] == 10
    assert summary["text_segmentation"]["best"]["n"] > 0
    assert main(["probing", "--store", str(correspondence_store), "--out", str(tmp_path / "c")]) == 0
    choice = json.loads((tmp_path / "c" / "probing.json").read_text())["paired_choice"]
    assert choice["n_trials"] == 6 and choice["best"]["n"] == 3 and choice["best"]["method"].startswith("exact")


def test_variance_runs_on_a_keys_only_store(selection_stores, tmp_path):
    assert main(["variance", "--store", str(selection_stores["keys"]), "--out", str(tmp_path), "--method", "valley"]) == 0
    values = xr.open_zarr(tmp_path / "key_variance.zarr", consolidated=False).key_variance
    expected = variance.key_variance(store.reader.open(selection_stores["full"]), KEYS, ImagePart.BASE).compute()
    assert values.shape == (2, 2)
    np.testing.assert_array_equal(values.values, expected.values)  # as from the full capture's keys


@pytest.mark.parametrize(("command", "missing", "arrays"), [
    (["cosine"], "'hidden'", "--arrays hidden,keys"), (["token-norms"], "'hidden'", "--arrays hidden,keys"),
    (["logit-lens"], "'hidden'", "--arrays hidden,keys"),
    (["ffn-memory"], "'ffn_topk_index', 'ffn_topk_value'", "--arrays keys,ffn"),
    (["norm-attention"], "'attention_last', 'values'", "--arrays keys,values and --attention-last"),
    (["correspondence", "--array", "values"], "'values'", "--arrays keys,values"),
    (["probing", "--array", "hidden"], "'hidden'", "--arrays hidden,keys"),
    (["clustering", "--array", "values"], "'values'", "--arrays keys,values")])
def test_an_analysis_refuses_a_store_without_its_arrays_in_one_line(selection_stores, tmp_path, capsys, command,
                                                                    missing, arrays):
    store = selection_stores["keys"]
    assert main([command[0], "--store", str(store), "--out", str(tmp_path), *command[1:]]) == 2
    assert capsys.readouterr().err.strip() == (f"error: {command[0]}: {store} holds no {missing} "
                                               f"array{'s' if ',' in missing else ''} (captured with --arrays keys): "
                                               f"recapture with {arrays}")
    assert not any(tmp_path.iterdir())  # nothing written
