"""`python -m toy [train|show]`: train the toy model (or reuse the cached one) and report its held-out accuracy.

    python -m toy train                       # build toy-llava-ov into the cache, unless already built
    python -m toy train --retrain --freeze projector --out /tmp/toy-projector-only
    python -m toy show                        # the cached build's recipe and accuracies
    python -m toy pin                         # commit the cached build as toy/pinned/ (after retraining)
    python -m toy train-projector             # retrain dino-smollm2-llava's committed projector (capture.real_parts)
"""

from __future__ import annotations

import argparse
import shutil
import sys
from dataclasses import replace
from pathlib import Path

from capture.real_parts import assemble
from toy.evaluate import CHANCE
from toy.model import pinned_build_dir, read_build, toy_model_dir
from toy.train import FREEZING, TrainingRecipe, ensure_toy_model, is_current, train_and_save

NAME = "toy-llava-ov"
PROJECTOR_DIR = Path(assemble.__file__).parent


def report(record: dict) -> str:
    lines = [f"{record['name']} v{record['version']}: freeze={record['recipe']['freeze']}, "
             f"trained in {record['train_seconds']:.0f} s"]
    for key, chance in CHANCE.items():
        lines.append(f"  {key.replace('_', ' ')}: {record['held_out'][key]:.1f}% (chance {chance:.0f}%)")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m toy", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    train_parser = sub.add_parser("train", help="train the toy model (reuses a current cached build)")
    train_parser.add_argument("--out", type=Path, help=f"model directory (default: the cache's {NAME})")
    train_parser.add_argument("--freeze", choices=FREEZING, default=TrainingRecipe.freeze,
                              help="projector: only the projector learns (Jung et al.); projector-then-all: LLaVA's "
                                   "two stages (default); all: everything from the start")
    train_parser.add_argument("--steps", type=int, default=TrainingRecipe.steps, help="steps of the 'all' stage")
    train_parser.add_argument("--projector-steps", type=int, default=TrainingRecipe.projector_steps)
    train_parser.add_argument("--seed", type=int, default=TrainingRecipe.seed)
    train_parser.add_argument("--retrain", action="store_true", help="train even if a current build is there")
    sub.add_parser("pin", help=f"copy the cache's current {NAME} build to toy/pinned/ (committed with the code)")
    show_parser = sub.add_parser("show", help="print a build's recipe and held-out accuracy")
    show_parser.add_argument("--out", type=Path, help=f"model directory (default: the cache's {NAME})")
    projector_parser = sub.add_parser("train-projector", help="retrain dino-smollm2-llava's projector (about 40 min)")
    projector_parser.add_argument("--seed", type=int, default=0)
    projector_parser.add_argument("--out", type=Path, default=PROJECTOR_DIR,
                                  help="where the weights and record go (default: the committed ones in capture/real_parts)")
    args = parser.parse_args(argv)
    if args.command == "train-projector":
        from toy.projector import train_and_write

        train_and_write(args.seed, args.out)
        return 0

    if args.command == "pin":
        return pin()
    out = args.out or toy_model_dir(NAME)
    record = read_build(out)
    if args.command == "show":
        if record is None:
            print(f"error: no toy build at {out}; run `python -m toy train`", file=sys.stderr)
            return 1
        print(report(record))
        return 0
    recipe = replace(TrainingRecipe(), freeze=args.freeze, steps=args.steps, projector_steps=args.projector_steps,
                     seed=args.seed)
    if record is None and out.exists() and any(out.iterdir()):
        print(f"error: {out} exists and is not a toy model build; refusing to replace it", file=sys.stderr)
        return 1
    if not args.retrain and args.out is None and recipe == TrainingRecipe():
        out = ensure_toy_model(NAME)  # the cached build, else the pinned one, else trained here
        print(f"using {out}\n" + report(read_build(out)))
        return 0
    if is_current(record, recipe) and not args.retrain:
        print(f"reusing {out}\n" + report(record))
        return 0
    train_and_save(out, recipe, name=NAME)
    print(f"saved {out}\n" + report(read_build(out)))
    return 0


def pin() -> int:
    """Replace toy/pinned/<NAME> with the cache's build, if that build is current."""
    source, target = toy_model_dir(NAME), pinned_build_dir(NAME)
    if not is_current(read_build(source), TrainingRecipe()):
        print(f"error: no current {NAME} build at {source}; run `python -m toy train --retrain` first", file=sys.stderr)
        return 1
    shutil.rmtree(target, ignore_errors=True)
    shutil.copytree(source, target)
    print(f"pinned {target}\n" + report(read_build(target)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
