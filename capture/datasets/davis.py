"""`davis`: DAVIS-2017 (Pont-Tuset et al. 2017) as distributed (DAVIS-2017-trainval-480p.zip), one record per frame.

Layout under --data-root (the DAVIS folder):

    ImageSets/2017/{train,val}.txt          sequence names, one a line (test-dev.txt too, for that download)
    JPEGImages/480p/<sequence>/00000.jpg    the frames
    Annotations/480p/<sequence>/00000.png   palette PNGs: the palette index is the object id (0 background)

Records: one frame each, sample id `<sequence>/<frame file stem>`, in sequence-list order then frame order;
annotation `video` (the sequence), `frame` (its index in the sequence), `masks` (the frame's annotation PNG,
read by the analyses as object ids; left out for frames without one, e.g. test-dev after frame 0) and
`file_name`. `--split` val (default) / train / any list in ImageSets/2017; `--subset` sequence names,
comma-separated.
"""

from __future__ import annotations

from pathlib import Path

from capture.datasets.base import Dataset, Record
from capture.datasets.layout import choose, read_list, require_dir
from capture.errors import CaptureError
from store import annotation as contract

NAME = "davis"
DEFAULT_SPLIT = "val"
RESOLUTION = "480p"
LISTS = Path("ImageSets") / "2017"


def open_davis(root: Path, split: str | None, limit: int | None, subset: str | None = None) -> Dataset:
    """Frames of the sequences of `split` (default val); `subset`: sequence names, comma-separated."""
    split = split or DEFAULT_SPLIT
    list_dir = require_dir(root / LISTS, NAME, "sequence lists (ImageSets/2017/{train,val}.txt)")
    list_file = list_dir / f"{split}.txt"
    if not list_file.is_file():
        known = sorted(p.stem for p in list_dir.glob("*.txt"))
        raise CaptureError(f"{NAME}: no sequence list {list_file} for --split {split!r} (found: {', '.join(known)})")
    frames_dir = require_dir(root / "JPEGImages" / RESOLUTION, NAME, f"frames (JPEGImages/{RESOLUTION}/<sequence>/)")
    masks_dir = require_dir(root / "Annotations" / RESOLUTION, NAME,
                            f"palette masks (Annotations/{RESOLUTION}/<sequence>/)")
    sequences = read_list(list_file)
    wanted = choose(subset, sequences, NAME)
    records: list[Record] = []
    for sequence in wanted or sequences:
        folder = require_dir(frames_dir / sequence, NAME, f"frames of sequence {sequence}")
        for index, frame in enumerate(sorted(folder.glob("*.jpg"))):
            if limit is not None and len(records) >= limit:
                return Dataset(NAME, root, split, records)
            annotation: dict = {contract.VIDEO: sequence, contract.FRAME: index,
                                contract.FILE_NAME: str(frame.relative_to(root))}
            mask = masks_dir / sequence / f"{frame.stem}.png"
            if mask.is_file():
                annotation[contract.MASKS] = str(mask.resolve())
            records.append(Record(f"{sequence}/{frame.stem}", (frame,), annotation))
    if not records:
        raise CaptureError(f"{NAME}: no frames (*.jpg) under {frames_dir} for the sequences of {list_file}")
    return Dataset(NAME, root, split, records)
