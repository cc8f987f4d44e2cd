"""`python -m capture.real_parts fetch | train-projector`.

    python -m capture.real_parts fetch             # download, check, convert, assemble dino-smollm2-llava (cached)
    python -m capture.real_parts train-projector   # retrain the committed projector (about 40 min on 2 cores)
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import asdict, replace
from pathlib import Path

from capture.errors import CaptureError

HERE = Path(__file__).parent


def fetch() -> dict[str, str]:
    """Every real part in the cache (files, converted checkpoints, the assembled model): {what: path}."""
    from capture.real_parts.assemble import REAL_PARTS_MODELS, ensure_real_parts_model
    from capture.real_parts.convert_dinov2 import ensure_dinov2
    from capture.real_parts.convert_smollm2 import ensure_smollm2
    from capture.real_parts.fetch import QUOKKA_JPG, QUOKKA_JSON, member_path

    paths = {"quokka": str(member_path("imgaug", QUOKKA_JPG).parent)}
    member_path("imgaug", QUOKKA_JSON)
    timed = [("smollm2", ensure_smollm2), ("dinov2", ensure_dinov2),
             *((name, lambda name=name: ensure_real_parts_model(name)) for name in REAL_PARTS_MODELS)]
    for what, ensure in timed:
        started = time.perf_counter()
        paths[what] = str(ensure())
        print(f"{what}: {paths[what]} ({time.perf_counter() - started:.0f} s)", flush=True)
    return paths


def train_projector(seed: int, out_dir: Path) -> None:
    """Train the full recipe and the smoke recipe; write projector.safetensors, projector-smoke.safetensors and
    projector.json (recipe, command, held-out figures, timings, checksums) into `out_dir`."""
    import torch
    from safetensors.torch import save_file

    from capture.real_parts.train_projector import SMOKE_RECIPE, ProjectorRecipe, train

    recipe = replace(ProjectorRecipe(), seed=seed)
    started = time.perf_counter()
    state, record = train(recipe)
    out_dir.mkdir(parents=True, exist_ok=True)
    save_file(state, out_dir / "projector.safetensors")
    smoke_state, smoke_record = train(replace(SMOKE_RECIPE, seed=seed), log=lambda line: None)
    save_file({k: v.to(torch.float16) for k, v in smoke_state.items()}, out_dir / "projector-smoke.safetensors")
    summary = {
        "command": f"python -m capture.real_parts train-projector --seed {seed}",
        "recipe": asdict(recipe), "smoke_recipe": asdict(replace(SMOKE_RECIPE, seed=seed)),
        "total_seconds": round(time.perf_counter() - started, 1), **record,
        "smoke": {"sha256": smoke_record["sha256"], "cpu_capability": smoke_record["cpu_capability"],
                  "torch": smoke_record["torch"]},
    }
    (out_dir / "projector.json").write_text(json.dumps(summary, indent=1) + "\n")
    print(f"saved {out_dir / 'projector.safetensors'} ({summary['total_seconds']:.0f} s)")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m capture.real_parts", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("fetch", help="download, check and convert the real weights; assemble the real-parts models")
    train_parser = sub.add_parser("train-projector", help="retrain dino-smollm2-llava's projector")
    train_parser.add_argument("--seed", type=int, default=0)
    train_parser.add_argument("--out", type=Path, default=HERE, help="where the weights and record go (default: the "
                                                                      "committed ones beside this module)")
    args = parser.parse_args(argv)
    try:
        if args.command == "fetch":
            fetch()
        else:
            train_projector(args.seed, args.out)
    except CaptureError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
