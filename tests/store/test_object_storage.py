"""Stores on object storage: capture to and analyse from a real S3-compatible server (moto) on loopback,
whole-shard writes with the completion record last, catalog entries holding s3:// URLs."""

from __future__ import annotations

import json
import logging
import os

import numpy as np
import pytest
import zarr

import store.reader
from analyses.__main__ import main as analyses_main
from capture.errors import CaptureError
from capture.options import CaptureOptions
from capture.run import run_capture
from store import catalog, location, schema
from store.info import bytes_on_disk
from store.layout import StorePlan, empty_arrays
from store.validate import validate
from store.writer import LensPayload, ShardPayload, ShardWriter, create_store

BUCKET = "lab"


@pytest.fixture(scope="module")
def s3():
    """An S3 server on 127.0.0.1 (moto), with credentials and endpoint in the usual AWS_* variables; yields its URL
    prefix `s3://lab`."""
    moto_server = pytest.importorskip("moto.server")
    pytest.importorskip("s3fs")
    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # one line per request otherwise
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    variables = {"AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test", "AWS_DEFAULT_REGION": "us-east-1",
                 "AWS_ENDPOINT_URL": f"http://{host}:{port}"}
    saved = {key: os.environ.get(key) for key in variables}
    os.environ.update(variables)
    fs, _ = location.filesystem(f"s3://{BUCKET}")
    fs.mkdir(BUCKET)
    yield f"s3://{BUCKET}"
    fs.clear_instance_cache()
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value
    server.stop()


def assert_same_arrays(expected: str | os.PathLike, actual: str | os.PathLike) -> None:
    want, got = (zarr.open_group(location.zarr_store(path, read_only=True), mode="r") for path in (expected, actual))
    for group in ("", schema.LENS_GROUP, schema.PROGRESS_GROUP):
        a, b = (want[group], got[group]) if group else (want, got)
        assert sorted(a.array_keys()) == sorted(b.array_keys())
        for name in a.array_keys():
            x, y = a[name][...], b[name][...]
            assert np.array_equal(x, y, equal_nan=x.dtype.kind == "f"), f"{group}/{name}"
    assert want.attrs["capture_config"] == got.attrs["capture_config"]


@pytest.fixture(scope="module")
def captured(s3, cache_home, synthetic_root, tmp_path_factory) -> tuple[str, str]:
    """The same capture on local disk and on S3 (the S3 one by two ranks, one after the other)."""
    options = CaptureOptions(data_root=synthetic_root, limit=5, batch_size=2, progress=False)
    local = tmp_path_factory.mktemp("local") / "local.zarr"
    run_capture(CaptureOptions(**{**options.__dict__, "out": local}))
    url = f"{s3}/stores/remote.zarr"
    first = run_capture(CaptureOptions(**{**options.__dict__, "out": url, "rank": 0, "world_size": 2}))
    assert first.pending_shards == 1 and validate(url)[0].startswith("incomplete: 1 of 3 shards")
    second = run_capture(CaptureOptions(**{**options.__dict__, "out": url, "rank": 1, "world_size": 2}))
    assert second.pending_shards == 0 and second.bytes_on_disk > 0
    return str(local), url


def test_capture_to_s3_equals_the_local_capture(captured):
    local, url = captured
    assert validate(url) == []
    assert_same_arrays(local, url)
    assert bytes_on_disk(url) > 0.9 * bytes_on_disk(local)  # same shard files, give or take metadata
    ds = store.reader.open(url)
    assert ds.hidden.chunks == store.reader.open(local).hidden.chunks
    assert np.array_equal(ds.hidden.values, store.reader.open(local).hidden.values)


def test_analysis_from_s3_equals_the_local_one(captured, tmp_path):
    local, url = captured
    for name, source in (("local", local), ("s3", url)):
        assert analyses_main(["token-norms", "--store", source, "--out", str(tmp_path / name)]) == 0
    results = [json.loads((tmp_path / name / "token_norms.json").read_text()) for name in ("local", "s3")]
    assert results[1].pop("store") == url
    results[0].pop("store")
    assert results[0] == results[1]


def test_a_catalog_entry_with_an_s3_url_opens(captured, tmp_path):
    _, url = captured
    row = catalog.add(tmp_path / "team", url)
    assert row["url"] == url
    team = catalog.Catalog.read(tmp_path / "team")
    assert team.check() == []
    ds = team.search(url=url).open()
    assert ds.sizes["sample"] == 5 and ds.attrs["capture_config"]["n_samples"] == 5


def test_missing_bucket_and_backend_are_clear_errors(s3, synthetic_root, tmp_path):
    assert analyses_main(["token-norms", "--store", f"{s3}/no-such.zarr", "--out", str(tmp_path)]) == 2
    with pytest.raises(CaptureError, match="cannot write the store at s3://no-such-bucket/x.zarr: FileNotFoundError"):
        run_capture(CaptureOptions(data_root=synthetic_root, limit=2, progress=False, out="s3://no-such-bucket/x.zarr"))
    with pytest.raises(location.LocationError, match="cannot open nosuch://x"):
        location.zarr_store("nosuch://x")


class RecordingStore(zarr.storage.WrapperStore):
    """Records every key read and written, in order."""

    def __init__(self, store):
        super().__init__(store)
        self.events: list[tuple[str, str]] = []

    async def get(self, key, prototype, byte_range=None):
        value = await self._store.get(key, prototype, byte_range)
        self.events.append(("get" if value is None else "read", key))
        return value

    async def set(self, key, value):
        self.events.append(("set", key))
        await self._store.set(key, value)


def test_shards_are_written_whole_with_the_record_last(s3):
    plan = StorePlan(n_samples=3, batch_size=2, max_images=1, layers=(0, 1), streams=(0, 1, 2), n_kv_heads=2,
                     head_dim=4, d_model=8, ffn_units=16, ffn_topk=2, compute_dtype="float32", keys_prerope=False,
                     ffn_dense=False, token_capacity=1024)
    url = f"{s3}/stores/recorded.zarr"
    create_store(url, plan, {schema.ATTR_FORMAT: schema.FORMAT_NAME}, LensPayload())
    recording = RecordingStore(location.zarr_store(url))
    writer = ShardWriter(zarr.open_group(recording, mode="r+"), plan)
    for shard, tokens in ((0, 300), (1, 40)):  # two token blocks in shard 0, one in the partial shard 1
        arrays = empty_arrays(plan, len(plan.shard_samples(shard)), tokens)
        arrays[schema.HIDDEN][...] = shard + 1
        writer.submit(ShardPayload(shard, arrays, tokens))
    writer.close()

    data_keys = [key for op, key in recording.events if op == "set" and "/c/" in key]
    assert len(data_keys) == len(set(data_keys))  # every object written once, whole
    # zarr-python's sharding codec looks up a shard before writing it; on a fresh store it finds nothing there
    # and no other object is ever read
    assert not [key for op, key in recording.events if op == "read" and "/c/" in key]
    assert {key for op, key in recording.events if op == "get" and "/c/" in key} <= set(data_keys)
    assert "hidden/c/0/0/0/0" in data_keys and "hidden/c/0/0/1/0" in data_keys and "hidden/c/1/0/0/0" in data_keys
    assert not any(key.startswith("hidden/c/0/0/2") for key in data_keys)  # unwritten capacity stays empty
    # shards may be in flight together (the writer keeps two): each shard's record comes after all of its objects
    for shard in (0, 1):
        record = data_keys.index(f"progress/shard_complete/c/{shard}")
        own = [i for i, key in enumerate(data_keys) if key.split("/c/")[1].split("/")[0] == str(shard)]
        assert max(i for i in own if i != record) < record
    root = zarr.open_group(location.zarr_store(url), mode="r")
    assert (root[schema.HIDDEN][:2, :, :300] == 1).all() and (root[schema.HIDDEN][2:, :, :40] == 2).all()
