"""Where a store lives: a local directory, or an object-store URL (`s3://bucket/prefix`, `gs://...`, `file://...`).

URLs go through fsspec with zarr's own `FsspecStore`; credentials and endpoints come from the usual environment
variables of each backend (for S3: `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`,
`AWS_PROFILE`, `AWS_ENDPOINT_URL` for S3-compatible servers, `AWS_DEFAULT_REGION`).
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import zarr
from zarr.abc.store import Store

Location = str | Path
# Directory listings are not cached: another process (a capture rank) may add shards at any time, and fsspec shares
# one filesystem instance per set of arguments within a process, so a cached listing would hide new objects.
STORAGE_OPTIONS = {"use_listings_cache": False}
BACKEND_PACKAGES = {"s3": "s3fs", "s3a": "s3fs", "gs": "gcsfs", "gcs": "gcsfs", "az": "adlfs", "abfs": "adlfs"}


class LocationError(Exception):
    """A location that cannot be opened (unknown protocol, backend not installed); one line."""


def is_url(location: Location) -> bool:
    return "://" in str(location)


def normalise(location: Location) -> Location:
    """URLs as given (without a trailing slash); local paths absolute. `Path("s3://b/p")` would lose a slash, so
    command-line values must arrive here as strings."""
    if is_url(location):
        return str(location).rstrip("/")
    return Path(location).expanduser().resolve()


def filesystem(url: str):
    """(fsspec filesystem, path inside it) for a URL, with a clear error when its backend is not installed."""
    import fsspec

    try:
        return fsspec.core.url_to_fs(url, **STORAGE_OPTIONS)
    except (ImportError, ValueError) as error:
        protocol = url.split("://", 1)[0]
        package = BACKEND_PACKAGES.get(protocol)
        hint = f": install {package} (pip install {package})" if package else ""
        raise LocationError(f"cannot open {url}{hint} ({error})") from None


def zarr_store(location: Location, read_only: bool = False) -> Store:
    """zarr's store class for `location`: `LocalStore` for a directory, `FsspecStore` for a URL."""
    if not is_url(location):
        return zarr.storage.LocalStore(Path(location), read_only=read_only)
    filesystem(str(location))  # backend check with a clear message
    return zarr.storage.FsspecStore.from_url(str(location), storage_options=STORAGE_OPTIONS, read_only=read_only)


def check_writable(location: Location) -> None:
    """Raise LocationError (one line) unless a store can be written at `location`: for a directory, its nearest
    existing parent takes a file; for a URL, a probe object can be written and deleted beside the store."""
    if not is_url(location):
        parent = Path(location).parent
        while not parent.exists():
            parent = parent.parent
        probe = parent / f".write-probe-{Path(location).name}"
        try:
            probe.touch()
            probe.unlink()
        except OSError as error:
            raise LocationError(f"cannot write the store at {location}: {error.strerror or error} ({parent})") from None
        return
    fs, path = filesystem(str(location))
    probe = f"{path}.write-probe"
    try:
        fs.pipe_file(probe, b"")
        fs.rm_file(probe)
    except Exception as error:  # backends raise their own types (botocore, aiohttp, OSError)
        raise LocationError(f"cannot write the store at {location}: {type(error).__name__}: {error}") from None


def replace_json(location: Location, key: str, document: dict) -> None:
    """Write `document` as the JSON object `key` (e.g. "hidden/zarr.json") of the store at `location`, whole: an
    atomic rename for a directory, one PUT for an object store."""
    text = json.dumps(document, indent=2, allow_nan=True).encode()  # as zarr-python writes its metadata
    if not is_url(location):
        target = Path(location) / key
        staging = target.with_name(f".{target.name}.tmp")
        staging.write_bytes(text)
        os.replace(staging, target)
        return
    fs, path = filesystem(str(location))
    fs.pipe_file(f"{path}/{key}", text)


def read_json(location: Location, key: str) -> dict:
    """The JSON object `key` of the store at `location`."""
    if not is_url(location):
        return json.loads((Path(location) / key).read_bytes())
    fs, path = filesystem(str(location))
    return json.loads(fs.cat_file(f"{path}/{key}"))


def exists(location: Location) -> bool:
    """Whether anything is stored at `location`."""
    if not is_url(location):
        return Path(location).exists()
    fs, path = filesystem(str(location))
    return bool(fs.exists(path))


def remove(location: Location) -> None:
    """Delete everything under `location`."""
    if not is_url(location):
        shutil.rmtree(location)
        return
    fs, path = filesystem(str(location))
    fs.rm(path, recursive=True)
