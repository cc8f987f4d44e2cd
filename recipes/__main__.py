"""`python -m recipes list` | `python -m recipes run NAME --model M --data NAME=DIR [--data ...] [--out DIR]
[--limit N]`: the papers' results, one command each."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only; before anything imports pyplot

from capture.errors import CaptureError  # noqa: E402
from recipes.catalog import RECIPES, recipe  # noqa: E402
from recipes.recipe import Context, MissingData, write_table  # noqa: E402


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m recipes", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("list", help="every recipe: paper, result, settings and the data it reads")
    run = commands.add_parser("run", help="run one recipe")
    run.add_argument("name", help="recipe name (see `list`)")
    run.add_argument("--model", default="llava-ov-7b", help="alias, hub id or local checkpoint directory")
    run.add_argument("--data", action="append", default=[], metavar="NAME=DIR",
                     help="a data set's folder, e.g. coco=/data/coco (repeat)")
    run.add_argument("--out", type=Path, help="results folder (default: results/recipes/<name>)")
    run.add_argument("--limit", type=int, help="a quick look: at most N samples per capture, and fewer episodes, "
                                                "random draws and kept-token counts (the paper's otherwise)")
    run.add_argument("--dtype", default="auto", choices=("auto", "bf16", "fp16", "fp32"))
    run.add_argument("--device", default="auto")
    return parser


def listing() -> str:
    """The recipes as text: name, paper, result, settings, and each data set with its expected layout."""
    blocks = []
    for r in RECIPES:
        lines = [f"{r.name}", f"  paper:    {r.paper}", f"  result:   {r.result}", f"  settings: {r.settings}"]
        lines += [f"  --data {name}=DIR  {layout}{' (optional)' if name in r.optional else ''}"
                  for name, layout in r.data.items()]
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks)


def parse_data(pairs: list[str]) -> dict[str, Path]:
    """--data NAME=DIR values by name; ValueError on a value without '='."""
    data = {}
    for pair in pairs:
        name, sep, folder = pair.partition("=")
        if not sep or not name or not folder:
            raise ValueError(f"--data {pair!r}: write NAME=DIR, e.g. coco=/data/coco")
        data[name] = Path(folder).expanduser()
    return data


def run(args: argparse.Namespace) -> Path:
    """Run the recipe of `args`; its table's markdown path."""
    chosen = recipe(args.name)
    data = parse_data(args.data)
    missing = chosen.missing(data)
    if missing:
        raise MissingData(missing[0])
    out = args.out or Path("results/recipes") / chosen.name
    context = Context(args.model, data, out, args.limit, args.dtype, args.device)
    out.mkdir(parents=True, exist_ok=True)
    rows = chosen.run(context)
    header = (f"# {chosen.name}: {chosen.result}\n\n{chosen.paper}. Model {args.model}; settings: {chosen.settings}"
              + (f"; --limit {args.limit}" if args.limit else ""))
    written = write_table(rows, out, header)
    for path in [*context.written, *written]:
        print(f"wrote {path}")
    print(written[1].read_text())
    return written[1]


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "list":
        print(listing())
        return 0
    try:
        run(args)
    except (MissingData, CaptureError, ValueError, FileNotFoundError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
