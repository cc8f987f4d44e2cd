"""Store size from the configs alone: bytes per sample and per 1000 COCO images (640 x 480) for every released
model, at the default capture settings (all layers, bf16, FFN top-16) and with dense FFN coefficients instead.
Image tokens only: the prompt's 20-40 text tokens add under 2 % for every family but Qwen2.5-VL (under 10 %).

Usage: python benchmarks/store_sizes.py
"""

from __future__ import annotations

import argparse
import sys

from common import append_results

from capture.registry import ALIASES  # noqa: E402
from capture.sizing import sample_size  # noqa: E402


def main(argv: list[str] | None = None) -> None:
    argparse.ArgumentParser().parse_args(argv)
    rows = ["| model | image tokens | MB / sample (top-16) | GB / 1000 images (top-16) | MB / sample (dense FFN) | "
            "GB / 1000 images (dense FFN) | dense / top-k |", "|---|---|---|---|---|---|---|"]
    for name in ALIASES:
        size = sample_size(name, 480, 640)
        topk = size.bytes_total
        dense = topk - size.bytes_ffn_topk + size.bytes_ffn_dense
        rows.append(f"| {name} | {size.image_tokens} | {topk / 1e6:,.1f} | {topk / 1e6:,.1f} | {dense / 1e6:,.1f} | "
                    f"{dense / 1e6:,.1f} | {dense / topk:.1f}x |")
    append_results("Store size per sample and per 1000 COCO images", "python benchmarks/store_sizes.py", rows)


if __name__ == "__main__":
    sys.exit(main())
