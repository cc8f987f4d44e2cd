"""`python -m capture`: run a model once over a dataset and store its activations."""

from __future__ import annotations

import sys

from capture.errors import CaptureError
from capture.options import parse_options
from capture.run import run_capture


def main(argv: list[str] | None = None) -> int:
    options = parse_options(argv)
    from huggingface_hub.utils import disable_progress_bars
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # our own progress bar and summary are the output
    disable_progress_bars()
    load_intervention = None
    if options.intervention is not None:
        # The command (not the capture library) hands the spec loader in: capture never imports interventions.
        from interventions.capturing import load_spec_intervention as load_intervention
    try:
        summary = run_capture(options, load_intervention)
    except CaptureError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        out = options.out or options.default_out()
        print(f"interrupted: completed shards in {out} are kept; rerun the same command to resume", file=sys.stderr)
        return 130
    print("\n".join(summary.lines()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
