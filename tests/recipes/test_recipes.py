"""Every recipe end to end on the miniature data sets with tiny-llava-ov (fp32, a few samples): the chain runs and
writes its table, with our number beside the paper's. The numbers of a random tiny model mean nothing; the table's
paper column must hold the number printed in the paper."""

from __future__ import annotations

import pandas as pd
import pytest

import store.reader
from recipes.__main__ import main
from recipes.catalog import RECIPES
from tests.recipes.layouts import build_all

# recipe -> (a result line of its table, the paper's number there)
PAPER = {
    "liu-key-variance": ("valley threshold of the key variance", "450"),
    "liu-spair-pck": ("SPair-71k PCK@0.1", "46.1"),
    "liu-davis-jf": ("DAVIS-2017 J&F", "65.8"),
    "liu-msrc-coseg": ("MSRC co-segmentation J_m", "61.6"),
    "liu-pascal5i-fewshot": ("Pascal-5i 5-shot foreground mIoU", "26.2"),
    "liu-refcoco-referring": ("RefCOCO referring segmentation mIoU", "64.8"),
    "liu-knockout": ("POPE F1, knockout: late input-agnostic keys", "81.2"),
    "liu-blink-paired": ("BLINK Art_Style: image values choose the option (mean-pooled cosine)", "81.1"),
    "jung-ffn-memory": ("seen: layers where the top-3 labels' cosine exceeds random", "every layer"),
    "neo-lens-ablation": ("logit lens: object tokens decoded as their class, best layer per image", "23.7"),
    "wei-interaction": ("share of the loss reduction reached with 40% of the image tokens", "70"),
}
LIMIT = {"liu-pascal5i-fewshot": 7, "jung-ffn-memory": 3}  # a 5-shot episode needs 7 images; labels need 3 prefixes


@pytest.fixture(scope="module")
def data_root(tmp_path_factory, cache_home):
    return build_all(tmp_path_factory.mktemp("recipe-data"))


def test_every_recipe_has_a_test_row():
    assert sorted(PAPER) == sorted(r.name for r in RECIPES)


@pytest.mark.parametrize("name", sorted(PAPER))
def test_recipe_runs_on_the_miniature_data(name, data_root, tmp_path):
    recipe = next(r for r in RECIPES if r.name == name)
    data = [f"{key}={data_root[key]}" for key in recipe.data]
    out = tmp_path / name
    assert main(["run", name, "--model", "tiny-llava-ov", "--dtype", "fp32", "--limit", str(LIMIT.get(name, 2)), "--out", str(out),
                 *[arg for pair in data for arg in ("--data", pair)]]) == 0
    table = pd.read_csv(out / "results.csv", dtype=str)
    result, paper = PAPER[name]
    line = table[table["result"] == result]
    assert len(line) == 1 and line["paper"].item() == paper
    assert line["source"].notna().item()
    assert (out / "results.md").read_text().count("|") > 8
    assert any(path.suffix == ".png" for path in out.rglob("*.png"))
    assert table["ours"].notna().any()  # at least one number of ours in the table
    if name == "liu-spair-pck":  # Table 4's prefixes reached the prompts, before the image
        prompts = {stem: str(store.reader.open(out / "stores" / f"{stem}.zarr").prompt.values[0])
                   for stem in ("spair", "spair-prefixed", "spair-random-prefix")}
        prefixed = prompts["spair-prefixed"]
        assert "cat" not in prompts["spair"] and prefixed.index("cat ") < prefixed.index("<image>")
        assert "A wooden table" in prompts["spair-random-prefix"]
    if name == "liu-knockout":  # MME was given too: its subtask scores are at most 200, MME* is their mean
        mme = table[table["result"].str.startswith("MME*")]
        assert list(mme["paper"]) == ["173.3", "179.0"]
        assert all(0.0 <= float(v) <= 200.0 for v in mme["ours"])


def test_a_missing_data_set_is_one_line(tmp_path, capsys):
    assert main(["run", "liu-knockout", "--model", "tiny-llava-ov", "--data", f"coco={tmp_path}"]) == 2
    error = capsys.readouterr().err.strip()
    assert error == ("error: recipe liu-knockout needs --data pope=DIR: POPE: "
                     "output/coco/coco_pope_{random,popular,adversarial}.json and COCO val2014/")
    assert main(["run", "liu-spair-pck", "--data", f"spair={tmp_path / 'nowhere'}"]) == 2
    assert "is not a folder; expected SPair-71k" in capsys.readouterr().err


def test_list_names_every_recipe_and_its_data(capsys):
    assert main(["list"]) == 0
    listing = capsys.readouterr().out
    for recipe in RECIPES:
        assert recipe.name in listing
        assert all(f"--data {name}=DIR" in listing for name in recipe.data)
