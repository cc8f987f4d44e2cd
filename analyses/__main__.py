"""`python -m analyses NAME --store PATH --out DIR`: run an analysis on a store, write results and figures."""

from __future__ import annotations

import argparse
import resource
import sys
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only; before anything imports pyplot

from analyses import commands  # noqa: E402
from store import location  # noqa: E402


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m analyses", description="Offline analyses of activation stores.")
    cluster = parser.add_mutually_exclusive_group()
    cluster.add_argument("--workers", type=int, default=0,
                         help="run dask on a LocalCluster of N single-threaded workers (0: dask's threaded scheduler)")
    cluster.add_argument("--scheduler", metavar="ADDRESS",
                         help="run dask on an existing cluster, e.g. tcp://10.0.0.5:8786 (a dask-jobqueue SLURMCluster's "
                              "scheduler_address), or a scheduler file written by `dask scheduler --scheduler-file`")
    sub = parser.add_subparsers(dest="name", required=True)

    def add(name: str, help_text: str, multi_store: bool = False) -> argparse.ArgumentParser:
        command = sub.add_parser(name, help=help_text, description=help_text)
        command.add_argument("--store", required=True, action="append" if multi_store else None,
                             help="store path or URL (s3://...)" + (" (repeat for one curve per store)" if multi_store else ""))
        command.add_argument("--out", type=Path, required=True, help="directory for results and figures")
        return command

    add("token-norms", "hidden-state norms by token kind, and high-norm (register) image tokens per layer")
    add("registers", "alias of token-norms: image tokens whose norm is 2 std above the mean, per layer")

    variance = add("variance", "input-agnostic image keys: per (layer, KV head) key variance across samples")
    variance.add_argument("--array", default="keys", choices=["keys", "keys_prerope", "values"])
    variance.add_argument("--part", default="base", choices=["base", "grid", "all"],
                          help="image tokens matched across samples (base view: same positions for every image size)")
    variance.add_argument("--method", default="otsu", choices=["otsu", "valley"], help="automatic threshold")
    variance.add_argument("--threshold", type=float, help="a fixed threshold instead")
    variance.add_argument("--layer-groups", help="first middle layer, first late layer (e.g. 8,18); default 8:10:10 proportions")
    variance.add_argument("--pca-samples", help="two sample indices for the PCA figure (default: the first two)")

    corr = add("correspondence", "semantic (keypoint PCK) and temporal (label propagation J&F) correspondence")
    corr.add_argument("--array", default="values", choices=["values", "keys", "keys_prerope", "hidden"])
    corr.add_argument("--part", default="auto", choices=["auto", "base", "grid"])
    corr.add_argument("--alpha", type=float, default=0.1, help="PCK threshold, fraction of the target box's longer side")
    corr.add_argument("--metric", default="cosine", choices=["cosine", "l2", "dot"])
    corr.add_argument("--device", default="auto", choices=["auto", "cpu", "gpu"], help="faiss index device")
    corr.add_argument("--topk", type=int, default=5)
    corr.add_argument("--n-last", type=int, default=7, help="previous frames in the propagation context")
    corr.add_argument("--radius", type=int, default=12, help="spatial neighbourhood, in token grid cells")
    corr.add_argument("--temperature", type=float, default=0.1)

    clus = add("clustering", "co-segmentation by clustering image tokens, and the seen / unseen label split")
    clus.add_argument("--array", default="values", choices=["values", "keys", "keys_prerope", "hidden"])
    clus.add_argument("--part", default="auto", choices=["auto", "base", "grid"])
    clus.add_argument("--k", type=int, default=8, help="clusters")
    clus.add_argument("--presence", type=float, default=0.05, help="share of an image's tokens for a cluster to count as present")
    clus.add_argument("--image-fraction", type=float, default=0.5,
                      help="common clusters are present in more than this share of images")
    clus.add_argument("--min-images", type=int, default=2, help="smallest image set (images sharing a label)")

    lens = add("logit-lens", "final norm + unembedding over hidden states: object hits, caption precision / recall")
    lens.add_argument("--k", type=int, default=5, help="top tokens kept per position")
    lens.add_argument("--layer", type=int, help="stream shown in the decoded-token image grid (default: the best)")
    lens.add_argument("--sample", type=int, default=0, help="sample shown in the decoded-token image grid")

    ffn = add("ffn-memory", "FFN key-value memory over visual prefixes (--template bbox --visual-prefix captures)")
    ffn.add_argument("--n-keys", type=int, default=3, help="top keys per layer and prefix")
    ffn.add_argument("--min-cosine", type=float, default=0.5, help="label coherence of a 'coherent' key")

    attention = add("norm-attention", "norm-based attention of the last position (captures with --attention-last)")
    attention.add_argument("--sample", type=int, default=0, help="sample of the layer x token heatmap")

    probe = add("probing", "few-shot linear probe, text-token segmentation and paired choice per layer and head")
    probe.add_argument("--array", default="values", choices=["values", "keys", "keys_prerope", "hidden"])
    probe.add_argument("--part", default="auto", choices=["auto", "base", "grid"])
    probe.add_argument("--n-support", type=int, default=2, help="support images per label")
    probe.add_argument("--text-store", help="text-only capture of the labels (--samples categories): path or URL")

    cos = add("cosine", "inter-modal cosine similarity of hidden states per layer", multi_store=True)
    cos.add_argument("--text", default="after_image", choices=["after_image", "all"], help="text tokens compared")
    cos.add_argument("--labels", help="comma-separated curve labels, one per --store")
    return parser


RUNNERS = {
    "token-norms": commands.run_token_norms,
    "registers": commands.run_token_norms,
    "logit-lens": commands.run_logit_lens,
    "ffn-memory": commands.run_ffn_memory,
    "norm-attention": commands.run_norm_attention,
    "probing": commands.run_probing,
    "variance": commands.run_variance,
    "correspondence": commands.run_correspondence,
    "clustering": commands.run_clustering,
    "cosine": commands.run_cosine,
}


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    options = {k: v for k, v in vars(args).items() if k not in ("name", "store", "out", "workers", "scheduler")}
    stores = [location.normalise(s) for s in (args.store if isinstance(args.store, list) else [args.store])]
    if options.get("text_store"):
        options["text_store"] = location.normalise(options["text_store"])
    try:
        missing = [str(s) for s in [*stores, options.get("text_store")] if s and not location.exists(s)]
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
    started = time.perf_counter()
    args.out.mkdir(parents=True, exist_ok=True)
    try:
        target = stores if args.name == "cosine" else stores[0]
        written = RUNNERS[args.name](target, args.out, **options)
    except (ValueError, FileNotFoundError, KeyError) as error:
        print(f"error: {args.name}: {error}", file=sys.stderr)
        return 2
    finally:
        if client is not None:
            client.close()
    for path in written:
        print(f"wrote {path}")
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"{args.name}: {time.perf_counter() - started:.1f} s, peak RSS {peak:.0f} MB")
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
