"""`python -m analyses [--workers N | --scheduler ADDRESS] NAME --store PATH --out DIR`: run an analysis on a
store, write results and figures."""

from __future__ import annotations

import argparse
import resource
import sys
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only; before anything imports pyplot

from analyses.command import Command, chosen_command, command_parser  # noqa: E402
from analyses.commands import COMMANDS  # noqa: E402
from store import location  # noqa: E402


def build_parser() -> argparse.ArgumentParser:
    """One subcommand per analysis, after the options of the dask cluster every analysis runs on."""
    parser, _ = command_parser("python -m analyses", "Offline analyses of activation stores.", COMMANDS)
    cluster = parser.add_mutually_exclusive_group()
    cluster.add_argument("--workers", type=int, default=0,
                         help="run dask on a LocalCluster of N single-threaded workers (0: dask's threaded scheduler)")
    cluster.add_argument("--scheduler", metavar="ADDRESS",
                         help="run dask on an existing cluster, e.g. tcp://10.0.0.5:8786 (a dask-jobqueue SLURMCluster's "
                              "scheduler_address), or a scheduler file written by `dask scheduler --scheduler-file`")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    command = chosen_command(COMMANDS, args.command)
    options = command.options_from(args)
    try:
        missing = [str(s) for s in options.stores() if not location.exists(s)]
    except location.LocationError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    if missing:
        print(f"error: store {', '.join(missing)} does not exist", file=sys.stderr)
        return 2
    try:
        client = _client(args.workers, args.scheduler)  # becomes dask's default scheduler for every computation
    except (OSError, TimeoutError) as error:
        print(f"error: cannot start or reach the dask cluster ({args.scheduler or f'{args.workers} local workers'}): "
              f"{error}", file=sys.stderr)
        return 2
    try:
        return _run(command, args.command, options)
    finally:
        if client is not None:
            client.close()


def _run(command: Command, name: str, options: object) -> int:
    """Run `command` (called `name` on the command line), print what it wrote, its time and peak memory."""
    started = time.perf_counter()
    try:
        written = command.execute(options)
    except (ValueError, FileNotFoundError, KeyError) as error:
        print(f"error: {name}: {error}", file=sys.stderr)
        return 2
    for path in written:
        print(f"wrote {path}")
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"{name}: {time.perf_counter() - started:.1f} s, peak RSS {peak:.0f} MB")
    return 0


def _client(workers: int, scheduler: str | None):
    """A dask.distributed client: on a new LocalCluster of `workers` processes, or connected to `scheduler` (an
    address or a scheduler file); None for dask's default threaded scheduler."""
    if not workers and not scheduler:
        return None
    from dask.distributed import Client, LocalCluster

    if scheduler:
        if Path(scheduler).is_file():
            return Client(scheduler_file=scheduler)
        return Client(scheduler)
    return Client(LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=":0"))


if __name__ == "__main__":
    sys.exit(main())
