"""Real-parts measurements (issue 20): `dino-smollm2-llava` (real DINOv2 + real SmolLM2) through the engine.

Steps (each appends a section to benchmarks/results.md and writes its figures and JSON to docs/real-parts/):
- `logit-lens`: text-only captures of ordinary sentences (benchmarks/data/sentences.txt); the last stream's logit lens
  against the model's own logits, and top-1 next-token accuracy per stream against chance and a unigram baseline;
- `correspondence`: value-token PCK@0.1 per (layer, KV head) on the photos' pairs (stereo ground-truth disparity,
  quokka flip / scale / crop), real model against a random-weight model of the same shape;
- `ffn-values`: Jung et al.'s value agreement (top-3 tokens of the top-3 activated FFN values contain the next token)
  on the sentences, against 3 random values per layer;
- `key-variance`: Liu et al.'s key variance (pre-RoPE image keys) over the photos and synthetic scenes, dip test;
- `storage`: bytes per codec and the largest relative error, real against the random tiny model; the largest
  activation magnitudes per stream; what bf16 storage of fp32 activations changes.

Usage: python benchmarks/real_parts.py [--steps logit-lens,correspondence,ffn-values,key-variance,storage] [--quick]
(or `python -m benchmarks real-parts ...`). Everything is fp32 on CPU; the captures go to
$VLM_CACHE_HOME/benchmarks/real-parts (real-parts-quick with --quick).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from common import REPO, append_results

from capture.paths import cache_home  # noqa: E402

# step -> (module, function)
STEPS = {"logit-lens": ("real_parts_text", "lens_step"), "correspondence": ("real_parts_images", "correspondence_step"),
         "ffn-values": ("real_parts_text", "ffn_step"), "key-variance": ("real_parts_images", "variance_step"),
         "storage": ("real_parts_images", "storage_step")}
FIGURES = REPO / "docs" / "real-parts"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python benchmarks/real_parts.py", description=__doc__.splitlines()[0])
    parser.add_argument("--steps", default=",".join(STEPS), help=f"comma-separated, from {', '.join(STEPS)}")
    parser.add_argument("--quick", action="store_true", help="few samples (a smoke test: no claims)")
    parser.add_argument("--figures", type=Path, default=FIGURES, help="where figures and JSON summaries go")
    args = parser.parse_args(argv)
    steps = [step.strip() for step in args.steps.split(",") if step.strip()]
    unknown = sorted(set(steps) - set(STEPS))
    if unknown:
        parser.error(f"unknown step(s) {', '.join(unknown)}: choose from {', '.join(STEPS)}")
    work = cache_home() / "benchmarks" / ("real-parts-quick" if args.quick else "real-parts")
    command = "python benchmarks/real_parts.py --steps " + ",".join(steps) + (" --quick" if args.quick else "")
    for step in steps:
        started = time.perf_counter()
        title, lines, summary = run_step(step, work, args.figures, args.quick)
        seconds = time.perf_counter() - started
        lines.append(f"\n({step}: {seconds:.0f} s on this machine; figures and JSON in "
                     f"{args.figures.relative_to(REPO) if args.figures.is_relative_to(REPO) else args.figures})")
        args.figures.mkdir(parents=True, exist_ok=True)
        (args.figures / f"{step}.json").write_text(json.dumps(summary, indent=1, default=float) + "\n")
        append_results(title, command, lines)
    return 0


def run_step(step: str, work: Path, figures: Path, quick: bool) -> tuple[str, list[str], dict]:
    """(results.md title, its markdown lines, a JSON summary) of one step."""
    import importlib

    module, function = STEPS[step]
    return getattr(importlib.import_module(module), function)(work, figures, quick)


if __name__ == "__main__":
    sys.exit(main())
