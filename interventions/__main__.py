"""`python -m interventions spec|poll|vqa|describe|loss`: intervention specs from analysis results, and evaluations with and
without them (results as CSV / JSON and figures in --out)."""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only; before anything imports pyplot

import pandas as pd  # noqa: E402

from analyses import tables  # noqa: E402
from capture.datasets import DATASETS, open_dataset  # noqa: E402
from capture.errors import CaptureError  # noqa: E402
from capture.loading import load_model, resolve_model  # noqa: E402
from interventions import evaluate, figures  # noqa: E402
from interventions.means import ablation_means  # noqa: E402
from interventions.spec import InterventionSpec, SpecError, load_spec, parse_spec, units_from_key_list  # noqa: E402


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m interventions", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    spec = sub.add_parser("spec", help="a knockout spec from a variance key list (input_agnostic_keys.json)")
    spec.add_argument("--keys", type=Path, required=True, help="key list written by `python -m analyses variance`")
    spec.add_argument("--group", help="early, middle or late (default: every flagged key)")
    spec.add_argument("--queries", default="text", help="token set whose attention is blocked (default: text)")
    spec.add_argument("--keys-set", default="image", help="token set that becomes invisible (default: image)")
    spec.add_argument("--name", help="condition name (default: from the group)")
    spec.add_argument("--out", type=Path, required=True)

    def model_options(command: argparse.ArgumentParser) -> None:
        command.add_argument("--model", default="tiny-llava-ov", help="alias, hub id or local checkpoint directory")
        command.add_argument("--revision")
        command.add_argument("--dataset", default="synthetic-coco", choices=DATASETS)
        command.add_argument("--data-root", type=Path)
        command.add_argument("--split")
        command.add_argument("--limit", type=int, help="first N records")
        command.add_argument("--dtype", default="auto")
        command.add_argument("--device", default="auto")
        command.add_argument("--attention", default="sdpa", choices=["sdpa", "eager"],
                             help="attention implementation (both honour the knockout mask)")
        command.add_argument("--out", type=Path, required=True, help="directory for tables and figures")

    poll = sub.add_parser("poll", help="yes/no object polling (POPE-style F1) with and without interventions")
    model_options(poll)
    poll.add_argument("--spec", type=Path, action="append", default=[], help="intervention spec (repeatable)")
    poll.add_argument("--controls", action="store_true",
                      help="add Liu et al.'s controls: as many other / random (layer, kv_head) units in the same layers")
    poll.add_argument("--layer-windows", type=int, metavar="N",
                      help="also run each spec's knockout restricted to every window of N consecutive layers")
    poll.add_argument("--question", default=evaluate.POLL_QUESTION, help="must contain {object}")
    poll.add_argument("--seed", type=int, default=0, help="absent objects and control units")

    vqa = sub.add_parser("vqa", help="questions with a prefilled answer prefix: accuracy among the dataset's answers")
    model_options(vqa)
    vqa.add_argument("--spec", type=Path, action="append", default=[], help="intervention spec (repeatable)")
    vqa.add_argument("--answer-prefix", default="", help="text the answer starts with, e.g. 'The colour is'")

    describe = sub.add_parser("describe", help="generated descriptions: objects named and absent objects named")
    model_options(describe)
    describe.add_argument("--spec", type=Path, action="append", default=[], help="intervention spec (repeatable)")
    describe.add_argument("--instruction", default=evaluate.DESCRIBE)
    describe.add_argument("--max-new-tokens", type=int, default=24)

    loss = sub.add_parser("loss", help="caption loss as a function of how many image tokens are kept (Wei ch. 4.3)")
    model_options(loss)
    loss.add_argument("--keep", default="0,1,2,4,8,16,32,64,all", help="comma-separated image-token counts")
    loss.add_argument("--instruction", default=evaluate.DESCRIBE)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        written = COMMANDS[args.command](args)
    except (SpecError, CaptureError, ValueError, FileNotFoundError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    for path in written:
        print(path)
    return 0


def run_spec(args: argparse.Namespace) -> list[Path]:
    units = units_from_key_list(args.keys, args.group)
    if not units:
        raise SpecError(f"key list {args.keys} flags no keys{' in group ' + args.group if args.group else ''}")
    name = args.name or f"{args.group or 'all'} input-agnostic keys"
    spec = {"name": name, "knockout": [{"queries": args.queries, "keys": args.keys_set, "units": [list(u) for u in units]}]}
    parse_spec(spec)  # the same checks as when it is loaded
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(spec, indent=2) + "\n")
    return [args.out]


def _load(args: argparse.Namespace):
    loaded = load_model(resolve_model(args.model, args.revision), args.dtype, args.device)
    loaded.model.set_attn_implementation(args.attention)
    dataset = open_dataset(args.dataset, args.data_root, args.split, args.limit)
    return loaded, dataset


def _specs(args: argparse.Namespace) -> dict[str, InterventionSpec]:
    """"none" and every --spec by name, read before the model is loaded (a bad spec fails at once)."""
    return {"none": InterventionSpec(), **{spec.name: spec for spec in map(load_spec, args.spec)}}


def run_poll(args: argparse.Namespace) -> list[Path]:
    if "{object}" not in args.question:
        raise ValueError("--question must contain {object}")
    conditions = _specs(args)
    loaded, dataset = _load(args)
    n_kv_heads = loaded.adapter.text_config(loaded.config).num_key_value_heads
    for spec in list(conditions.values())[1:]:
        if args.controls:
            conditions.update(evaluate.control_conditions(spec, n_kv_heads, args.seed))
        if args.layer_windows:
            conditions.update(layer_window_conditions(spec, args.layer_windows))
    means = ablation_means(list(conditions.values()), loaded)
    rows = evaluate.poll(loaded, dataset, conditions, means, args.question, args.seed)
    scores = evaluate.polling_scores(rows)
    base = next(s for s in scores if s["condition"] == "none")
    for score in scores:
        score["f1_change"] = score["f1"] - base["f1"]
    written = _write_results(args, "polling", rows, scores, conditions)
    written.append(figures.save(figures.polling_bars(scores), args.out / "polling_f1.png"))
    if args.layer_windows:
        written.append(figures.save(figures.window_effect(scores), args.out / "polling_f1_by_layer_window.png"))
    return written


def layer_window_conditions(spec: InterventionSpec, size: int) -> dict[str, InterventionSpec]:
    """The spec's knockouts restricted to each window of `size` consecutive layers among those they block."""
    layers = sorted({layer for knockout in spec.knockout for layer in knockout.layers()})
    conditions = {}
    for start in range(0, len(layers), size):
        window = set(layers[start : start + size])
        knockouts = tuple(replace(k, units=tuple(u for u in k.units if u[0] in window)) for k in spec.knockout)
        name = f"{spec.name} layers {min(window)}-{max(window)}"
        conditions[name] = replace(spec, name=name, knockout=tuple(k for k in knockouts if k.units))
    return conditions


def run_vqa(args: argparse.Namespace) -> list[Path]:
    conditions = _specs(args)
    loaded, dataset = _load(args)
    rows = evaluate.vqa(loaded, dataset, conditions, args.answer_prefix, ablation_means(list(conditions.values()), loaded))
    scores = evaluate.rate_scores(rows, {"accuracy": ("correct", None)})
    return _write_results(args, "vqa", rows, scores, conditions)


def run_describe(args: argparse.Namespace) -> list[Path]:
    conditions = _specs(args)
    loaded, dataset = _load(args)
    rows = evaluate.describe(loaded, dataset, conditions, args.instruction, args.max_new_tokens,
                             ablation_means(list(conditions.values()), loaded))
    scores = evaluate.rate_scores(rows, {"objects_named": ("objects_named", "objects"),
                                         "absent_named_per_description": ("absent_named", None)})
    return _write_results(args, "describe", rows, scores, conditions)


def _write_results(args: argparse.Namespace, name: str, rows: list[dict[str, Any]], scores: list[dict[str, Any]],
                   conditions: dict[str, InterventionSpec]) -> list[Path]:
    """NAME_answers.csv (one row per question and condition), NAME_scores.csv and NAME_scores.json (with the model,
    dataset, options and every condition's spec) in --out; the scores printed as a markdown table."""
    args.out.mkdir(parents=True, exist_ok=True)
    options = {key: value for key, value in vars(args).items()
               if key in ("question", "answer_prefix", "instruction", "max_new_tokens", "seed")}
    summary = {"model": args.model, "dataset": args.dataset, **options, "scores": scores,
               "conditions": {key: spec.as_dict() for key, spec in conditions.items()}}
    written = [_csv(rows, args.out / f"{name}_answers.csv"), _csv(scores, args.out / f"{name}_scores.csv"),
               args.out / f"{name}_scores.json"]
    written[-1].write_text(json.dumps(summary, indent=2) + "\n")
    print(tables.markdown(pd.DataFrame(scores).round(2)))
    return written


def run_loss(args: argparse.Namespace) -> list[Path]:
    keeps = [None if v.strip() == "all" else int(v) for v in args.keep.split(",")]
    loaded, dataset = _load(args)
    rows = evaluate.caption_losses(loaded, dataset, keeps, args.instruction)
    frame = pd.DataFrame(rows)
    table = frame.groupby("keep", sort=False).agg(kept_image_tokens=("kept_image_tokens", "mean"), mean=("loss", "mean"),
                                                  std=("loss", "std"), count=("loss", "count")).reset_index()
    args.out.mkdir(parents=True, exist_ok=True)
    written = [_csv(rows, args.out / "caption_loss_by_sample.csv"), args.out / "caption_loss.csv"]
    table.to_csv(written[-1], index=False)
    written.append(figures.save(figures.loss_curve(table), args.out / "caption_loss_vs_kept_tokens.png"))
    print(tables.markdown(table.round(4)))
    return written


def _csv(rows: list[dict[str, Any]], path: Path) -> Path:
    pd.DataFrame(rows).to_csv(path, index=False)
    return path


COMMANDS = {"spec": run_spec, "poll": run_poll, "vqa": run_vqa, "describe": run_describe, "loss": run_loss}

if __name__ == "__main__":
    sys.exit(main())
