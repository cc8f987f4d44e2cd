"""Run a command's `main(argv)` in the test process, as a subprocess would be seen: exit code, stdout, stderr.

Starting `python -m ...` costs seconds of imports (torch, transformers) per call; the commands' error paths
are the same functions either way. A few tests still start real subprocesses, for the entry points themselves,
environment variables read at import, and kills."""

from __future__ import annotations

import io
import subprocess
from collections.abc import Callable
from contextlib import redirect_stderr, redirect_stdout


def in_process(main: Callable[[list[str]], int], *args: str) -> subprocess.CompletedProcess:
    """`main(list(args))` with stdout and stderr captured; SystemExit (argparse's errors) becomes the exit code."""
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        try:
            code = main(list(args))
        except SystemExit as exit_:
            code = exit_.code if isinstance(exit_.code, int) else (0 if exit_.code is None else 1)
    return subprocess.CompletedProcess(list(args), code, out.getvalue(), err.getvalue())
