"""`python -m store info|validate PATH` and `python -m store catalog ...` (shared catalogs of stores)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from store.info import describe
from store.location import is_url
from store.validate import validate


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m store", description="Inspect activation stores and catalogs.")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("info", help="what is in a store").add_argument("path")
    commands.add_parser("validate", help="check completeness, shapes, dtypes, provenance").add_argument("path")

    catalog = commands.add_parser("catalog", help="shared catalogs of stores (intake-esm layout)")
    actions = catalog.add_subparsers(dest="action", required=True)

    def action(name: str, help_text: str) -> argparse.ArgumentParser:
        sub = actions.add_parser(name, help=help_text)
        sub.add_argument("--catalog", required=True, help="catalog name or path, e.g. catalogs/team (.json / .csv)")
        return sub

    add = action("add", "register a store (read from the store itself; it must validate)")
    add.add_argument("path", help="store path or URL (s3://, gs://, file://, ...)")
    add.add_argument("--absolute", action="store_true", help="record a file:// URL instead of a path relative to the catalog")
    add.add_argument("--replace", action="store_true", help="update the entry if the store is already registered")
    action("list", "one line per store")
    search = action("search", "stores whose columns match, e.g. model=tiny-llava-ov arrays=keys_prerope")
    search.add_argument("query", nargs="+", metavar="KEY=VALUE")
    opened = action("open", "open the one store matching the query and describe it")
    opened.add_argument("query", nargs="*", metavar="KEY=VALUE")
    action("check", "every entry still reachable and unchanged")
    remove = action("remove", "drop an entry")
    remove.add_argument("key", help="store_id or the recorded path / URL")
    return parser


def _query(pairs: list[str]) -> dict[str, str]:
    query = {}
    for pair in pairs:
        if "=" not in pair:
            raise ValueError(f"search terms are KEY=VALUE, got {pair!r}")
        key, value = pair.split("=", 1)
        query[key] = value
    return query


def _print_rows(table) -> None:
    for row in table.itertuples():
        print(f"{row.store_id}  {row.model:<22} {row.dataset:<26} n={row.n_captured:<6} {row.dtype:<9} "
              f"{row.size_bytes / 1e6:8.2f} MB  {row.url}")


def run_catalog(args: argparse.Namespace) -> int:
    from store import catalog

    if args.action == "add":
        row = catalog.add(args.catalog, args.path, absolute=args.absolute, replace=args.replace)
        print(f"added {row['store_id']} ({row['model']} on {row['dataset']}, {row['n_captured']} samples) "
              f"as {row['url']} to {catalog.catalog_files(args.catalog)[1]}")
        return 0
    if args.action == "remove":
        removed = catalog.remove(args.catalog, args.key)
        print(f"removed {removed} entr{'y' if removed == 1 else 'ies'}")
        return 0
    current = catalog.Catalog.read(args.catalog)
    if args.action == "list":
        _print_rows(current.table)
        return 0
    if args.action == "search":
        found = current.search(**_query(args.query))
        _print_rows(found.table)
        return 0 if len(found) else 1
    if args.action == "open":
        found = current.search(**_query(args.query))
        dataset = found.open()
        print(f"opened {found.table.store_id.iloc[0]} from {found.location(found.table.url.iloc[0])}")
        print(dataset)
        return 0
    problems = current.check()
    for problem in problems:
        print(f"  - {problem}")
    print(f"{len(current) - len({p.split(':')[0] for p in problems})} of {len(current)} entries reachable and unchanged")
    return 1 if problems else 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "catalog":
        from store.catalog import CatalogError

        try:
            return run_catalog(args)
        except (CatalogError, ValueError, FileNotFoundError) as error:
            print(f"error: {error}", file=sys.stderr)
            return 2
    if not is_url(args.path) and not Path(args.path).exists():
        print(f"error: {args.path} does not exist", file=sys.stderr)
        return 2
    try:
        if args.command == "info":
            print("\n".join(describe(args.path)))
            return 0
        problems = validate(args.path)
    except FileNotFoundError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    if problems:
        print(f"INVALID {args.path}: {len(problems)} problem(s)")
        print("\n".join(f"  - {p}" for p in problems))
        return 1
    print(f"valid: {args.path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
