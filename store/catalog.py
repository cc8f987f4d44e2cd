"""Catalogs of activation stores that a team shares: text files in git, one row per store.

The layout is intake-esm's: `NAME.json` (an ESM collection descriptor naming the columns and the asset
column) beside `NAME.csv` (one row per store, sorted, so concurrent additions merge cleanly in git). Every
column is read from the store itself at registration. Relative asset paths resolve against the catalog's
folder, so a repository of catalogs next to a shared data folder works on every machine; URLs
(`s3://`, `gs://`, `file://`, ...) are opened through fsspec.
"""

from __future__ import annotations

import csv
import fcntl
import getpass
import hashlib
import io
import json
import os
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

import pandas as pd
import xarray as xr

from store import schema
from store.location import filesystem, is_url

ESMCAT_VERSION = "0.1.0"
ASSET_COLUMN = "url"
COLUMNS = [
    "store_id", "model", "hub_id", "revision", "family", "dataset", "split", "n_samples", "n_captured", "arrays",
    "layers", "streams", "tokens", "dtype", "template", "prompt_hash", ASSET_COLUMN, "size_bytes", schema.ATTR_SCHEMA_VERSION,
    "package_version", "created", "created_by", "added", "added_by", "checksum",
]
LIST_COLUMNS = ("arrays", "tokens")  # ";"-separated; `search` matches one member
OPTIONAL_COLUMNS = ("streams",)  # catalogs written before these columns lack them (read as empty)
LIST_SEPARATOR = ";"
INTEGER_COLUMNS = ("n_samples", "n_captured", "size_bytes", schema.ATTR_SCHEMA_VERSION)


class CatalogError(Exception):
    """A catalog that cannot be read or a store that cannot be registered; the message is one line."""


def catalog_files(name: str | Path) -> tuple[Path, Path]:
    """(descriptor JSON, table CSV) of catalog `name` (with or without .json / .csv)."""
    path = Path(name)
    stem = path.with_suffix("") if path.suffix in (".json", ".csv") else path
    return stem.with_suffix(".json"), stem.with_suffix(".csv")


# ---------------------------------------------------------------------------------------------------------
# reading a store


def store_checksum(location: str | Path) -> str:
    """SHA-256 over every metadata document (`zarr.json`) of the store, in path order: changes when arrays,
    shapes or attributes change, not when data is read."""
    fs, root = filesystem(str(location))
    documents = sorted(p for p in fs.find(root) if p.endswith("zarr.json"))
    if not documents:
        raise CatalogError(f"{location} has no Zarr metadata (not a store, or not reachable)")
    digest = hashlib.sha256()
    for path in documents:
        digest.update(path[len(root):].encode())
        digest.update(fs.cat_file(path))
    return digest.hexdigest()


def _compact_layers(layers: list[int]) -> str:
    """[0, 1, 2, 5] -> '0-2,5'."""
    parts, start = [], None
    for i, layer in enumerate(layers):
        if start is None:
            start = layer
        if i + 1 == len(layers) or layers[i + 1] != layer + 1:
            parts.append(str(start) if start == layer else f"{start}-{layer}")
            start = None
    return ",".join(parts)


def _package_version() -> str:
    try:
        return metadata.version("vlm-activation-cache")
    except metadata.PackageNotFoundError:
        return "unknown"


def describe_store(location: str | Path, recorded_as: str) -> dict[str, Any]:
    """A catalog row for the (valid) store at `location`, recorded under `recorded_as` in the asset column."""
    from store.info import bytes_on_disk
    from store.validate import open_group, validate

    problems = validate(location)
    if problems:
        raise CatalogError(f"{location} fails validation ({len(problems)} problem(s), first: {problems[0]}); "
                           "run `python -m store validate` for all")
    root = open_group(location)
    config = schema.CaptureConfig.of(root.attrs)
    provenance = root.attrs[schema.ATTR_PROVENANCE]
    arrays = sorted(name for name in root.array_keys() if name in schema.ACTIVATION_DIMS)
    checksum = store_checksum(location)
    return {
        "store_id": checksum[:12],
        "model": config.model,
        "hub_id": config.hub_id or "",
        "revision": config.revision,
        "family": config.family,
        "dataset": config.dataset,
        "split": config.split or "",
        "n_samples": int(config.n_samples),
        "n_captured": int((root[schema.STATUS][...] == schema.SampleStatus.CAPTURED).sum()),
        "arrays": LIST_SEPARATOR.join(arrays),
        "layers": _compact_layers(list(config.layers)),
        "streams": _compact_layers(list(config.streams)),
        "tokens": LIST_SEPARATOR.join(config.tokens),
        "dtype": config.compute_dtype,
        "template": config.template,
        "prompt_hash": hashlib.sha256(json.dumps(config.prompt_settings(), sort_keys=True).encode()).hexdigest()[:12],
        ASSET_COLUMN: recorded_as,
        "size_bytes": bytes_on_disk(location),
        schema.ATTR_SCHEMA_VERSION: int(root.attrs[schema.ATTR_SCHEMA_VERSION]),
        "package_version": provenance.get("versions", {}).get("vlm-activation-cache", _package_version()),
        "created": provenance.get("created", ""),
        "created_by": provenance.get("user", "unknown"),
        "added": datetime.now(UTC).isoformat(timespec="seconds"),
        "added_by": getpass.getuser(),
        "checksum": checksum,
    }


# ---------------------------------------------------------------------------------------------------------
# reading and writing catalog files


def descriptor(catalog_id: str, csv_name: str) -> dict[str, Any]:
    """The intake-esm ESM collection descriptor of a catalog."""
    return {
        "esmcat_version": ESMCAT_VERSION,
        "id": catalog_id,
        "description": f"activation stores ({catalog_id}); one row per store, asset column '{ASSET_COLUMN}'",
        "catalog_file": csv_name,
        "attributes": [{"column_name": c, "vocabulary": ""} for c in COLUMNS if c != ASSET_COLUMN],
        "assets": {"column_name": ASSET_COLUMN, "format": "zarr"},
    }


def read_table(csv_path: Path) -> pd.DataFrame:
    """The rows of a catalog CSV; a malformed file raises CatalogError naming the line."""
    text = csv_path.read_text(encoding="utf-8")
    rows = list(csv.reader(io.StringIO(text)))
    if not rows:
        raise CatalogError(f"{csv_path}:1: empty file (expected the header: {','.join(COLUMNS)})")
    header = rows[0]
    missing = [c for c in COLUMNS if c not in header and c not in OPTIONAL_COLUMNS]
    if missing:
        raise CatalogError(f"{csv_path}:1: header lacks {', '.join(missing)}")
    records = []
    for number, row in enumerate(rows[1:], start=2):
        if not row:
            continue
        if len(row) != len(header):
            raise CatalogError(f"{csv_path}:{number}: {len(row)} fields, the header has {len(header)}")
        record = dict(zip(header, row, strict=True))
        for column in INTEGER_COLUMNS:
            try:
                record[column] = int(record[column])
            except ValueError:
                raise CatalogError(f"{csv_path}:{number}: {column} must be an integer, got {record[column]!r}") from None
        records.append(record)
    table = pd.DataFrame(records, columns=header)
    for column in OPTIONAL_COLUMNS:
        if column not in table.columns:
            table[column] = ""
    return table


def _write_table(csv_path: Path, table: pd.DataFrame) -> None:
    table = table.sort_values(["model", "dataset", "store_id"]).reset_index(drop=True)
    handle, temporary = tempfile.mkstemp(prefix=f".{csv_path.name}-", dir=csv_path.parent)
    with os.fdopen(handle, "w", newline="", encoding="utf-8") as out:
        table.to_csv(out, index=False, columns=COLUMNS, lineterminator="\n")
    os.replace(temporary, csv_path)  # readers see the old or the new file, never half of one


@contextmanager
def _locked(csv_path: Path):
    """Exclusive lock for a read-modify-write of the catalog (other processes wait)."""
    csv_path.parent.mkdir(parents=True, exist_ok=True)
    with open(csv_path.with_suffix(".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _ensure_files(json_path: Path, csv_path: Path) -> None:
    if not json_path.exists():
        json_path.write_text(json.dumps(descriptor(json_path.stem, csv_path.name), indent=2) + "\n")
    if not csv_path.exists():
        _write_table(csv_path, pd.DataFrame(columns=COLUMNS))


# ---------------------------------------------------------------------------------------------------------
# the catalog


@dataclass
class Catalog:
    """A catalog file pair and (a view of) its rows. `search` narrows the view; `open` opens what it holds."""

    json_path: Path
    table: pd.DataFrame

    @classmethod
    def read(cls, name: str | Path) -> Catalog:
        json_path, csv_path = catalog_files(name)
        if not json_path.exists() or not csv_path.exists():
            raise CatalogError(f"catalog {json_path} / {csv_path.name} not found")
        try:
            described = json.loads(json_path.read_text())
        except json.JSONDecodeError as error:
            raise CatalogError(f"{json_path}:{error.lineno}: not valid JSON ({error.msg})") from None
        if described.get("assets", {}).get("column_name") != ASSET_COLUMN:
            raise CatalogError(f"{json_path}: not an activation catalog (asset column is not {ASSET_COLUMN!r})")
        return cls(json_path, read_table(csv_path))

    @property
    def csv_path(self) -> Path:
        return catalog_files(self.json_path)[1]

    def __len__(self) -> int:
        return len(self.table)

    def location(self, url: str) -> str:
        """Where a row's store is: URLs as they are, relative paths against the catalog's folder."""
        if is_url(url) or Path(url).is_absolute():
            return url
        return str((self.json_path.parent / url).resolve())

    def search(self, **query: Any) -> Catalog:
        """Rows whose columns equal the given values (list columns such as `arrays`: contain the value)."""
        rows = pd.Series(True, index=self.table.index)
        for column, wanted in query.items():
            if column not in self.table.columns:
                raise CatalogError(f"unknown column {column!r} (columns: {', '.join(COLUMNS)})")
            values = self.table[column].astype(str)
            if column in LIST_COLUMNS:
                rows &= values.map(lambda v, w=str(wanted): w in v.split(LIST_SEPARATOR))
            else:
                rows &= values == str(wanted)
        return Catalog(self.json_path, self.table[rows])

    def open(self) -> xr.Dataset:
        """The store of the only row in this view, as `store.reader.open` returns it."""
        if len(self.table) != 1:
            raise CatalogError(f"{len(self.table)} stores match; narrow the search to one (or use open_all)")
        return self.open_all()[self.table.store_id.iloc[0]]

    def open_all(self) -> dict[str, xr.Dataset]:
        """Every store of the view by store_id."""
        import store.reader

        return {row.store_id: store.reader.open(self.location(getattr(row, ASSET_COLUMN)))
                for row in self.table.itertuples()}

    def to_intake_esm(self):
        """This view as an intake-esm datastore, asset paths resolved to URLs so intake-esm can load them
        (`.to_dataset_dict(xarray_open_kwargs={"consolidated": False, "chunks": {}})`)."""
        import intake

        table = self.table.copy()
        table[ASSET_COLUMN] = [url if is_url(url) else Path(self.location(url)).as_uri() for url in table[ASSET_COLUMN]]
        described = json.loads(self.json_path.read_text())
        described.pop("catalog_file", None)
        return intake.open_esm_datastore({"esmcat": described, "df": table})

    def check(self) -> list[str]:
        """Problems with the view's rows: stores no longer reachable, or whose metadata checksum changed."""
        problems = []
        for row in self.table.itertuples():
            location = self.location(getattr(row, ASSET_COLUMN))
            try:
                checksum = store_checksum(location)
            except (CatalogError, OSError) as error:
                problems.append(f"{row.store_id}: {location} not reachable ({error})")
                continue
            if checksum != row.checksum:
                problems.append(f"{row.store_id}: {location} changed since it was added (metadata checksum differs)")
        return problems


def add(name: str | Path, location: str | Path, absolute: bool = False, replace: bool = False) -> dict[str, Any]:
    """Register the store at `location` in catalog `name` (created if missing); returns its row.

    Local stores are recorded relative to the catalog's folder unless `absolute` (then as a file:// URL, which
    intake-esm can open directly); URLs are recorded as given. A store already present (same store_id) is
    refused unless `replace`.
    """
    json_path, csv_path = catalog_files(name)
    if is_url(location):
        recorded = str(location)
    else:
        path = Path(location).resolve()
        if not path.exists():
            raise CatalogError(f"store {location} does not exist")
        recorded = path.as_uri() if absolute else os.path.relpath(path, json_path.parent.resolve())
    row = describe_store(location, recorded)
    with _locked(csv_path):
        _ensure_files(json_path, csv_path)
        table = read_table(csv_path)
        existing = table.store_id == row["store_id"]
        if existing.any() and not replace:
            raise CatalogError(f"store {row['store_id']} is already in {csv_path} as {table[existing][ASSET_COLUMN].iloc[0]} "
                               "(pass --replace to update it)")
        table = pd.concat([table[~existing], pd.DataFrame([row])], ignore_index=True)
        _write_table(csv_path, table)
    return row


def remove(name: str | Path, key: str) -> int:
    """Remove rows whose store_id or asset path equals `key`; returns how many were removed."""
    json_path, csv_path = catalog_files(name)
    with _locked(csv_path):
        table = Catalog.read(name).table
        drop = (table.store_id == key) | (table[ASSET_COLUMN] == key)
        if not drop.any():
            raise CatalogError(f"no store {key!r} in {csv_path}")
        _write_table(csv_path, table[~drop])
    return int(drop.sum())
