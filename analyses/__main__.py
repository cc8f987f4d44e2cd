"""`python -m analyses NAME --store PATH --out DIR`: run an analysis on a store, write results and figures."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import store.reader
from analyses import token_norms


def run_token_norms(store_path: Path, out: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ds = store.reader.open(store_path)
    norms = token_norms.hidden_norms(ds)
    by_kind = token_norms.mean_norm_by_kind(norms, ds.kind).compute()
    registers = token_norms.register_fraction(norms, ds.kind).compute()
    out.mkdir(parents=True, exist_ok=True)
    results = {
        "store": str(store_path),
        "streams": [int(s) for s in by_kind.stream.values],
        "mean_norm_by_kind": {str(k): [float(v) for v in by_kind.sel(kind=k).values] for k in by_kind.kind.values},
        "register_fraction": [float(v) for v in registers.values],
    }
    results_path = out / "token_norms.json"
    results_path.write_text(json.dumps(results, indent=2) + "\n")

    figure, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    for kind in by_kind.kind.values:
        left.plot(by_kind.stream, by_kind.sel(kind=kind), marker="o", label=str(kind))
    left.set(xlabel="residual stream (input of layer i; last = final layer output)", ylabel="mean L2 norm",
             title="Hidden-state norm by token kind")
    left.legend()
    right.bar(registers.stream, registers.values)
    for axis in (left, right):
        axis.set_xticks([int(s) for s in by_kind.stream.values])
    right.set(xlabel="residual stream", ylabel="fraction of image tokens", title="High-norm image tokens (> mean + 2 std)")
    figure.suptitle(f"{ds.attrs['capture_config']['model']} on {ds.attrs['capture_config']['dataset']}")
    figure.tight_layout()
    figure_path = out / "token_norms.png"
    figure.savefig(figure_path, dpi=120)
    plt.close(figure)
    return [results_path, figure_path]


ANALYSES = {"token-norms": run_token_norms}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m analyses", description="Offline analyses of activation stores.")
    parser.add_argument("name", choices=sorted(ANALYSES))
    parser.add_argument("--store", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True, help="directory for results and figures")
    args = parser.parse_args(argv)
    if not args.store.exists():
        print(f"error: store {args.store} does not exist", file=sys.stderr)
        return 2
    for path in ANALYSES[args.name](args.store, args.out):
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
