"""`python -m capture.real_parts fetch`: download, check, convert and assemble dino-smollm2-llava (cached).

The committed projector is retrained by `python -m toy train-projector` (about 40 min on 2 cores).
"""

from __future__ import annotations

import argparse
import sys
import time

from capture.errors import CaptureError


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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m capture.real_parts", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("fetch", help="download, check and convert the real weights; assemble the real-parts models")
    parser.parse_args(argv)
    try:
        fetch()
    except CaptureError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
