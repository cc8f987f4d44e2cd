"""`--subset`: which named parts of a benchmark to read (POPE settings, MME subtasks, BLINK / CV-Bench tasks)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from capture.errors import CaptureError


def select_subsets(requested: str | None, names: Sequence[str], dataset: str,
                   groups: Mapping[str, Sequence[str]] | None = None) -> list[str]:
    """The subsets `requested` names, in the order of `names`; all of `names` when None.

    `requested` is a comma-separated list of names or group names (`groups` maps a group such as "perception" to
    its names), matched without regard to case. An unknown name is refused with the list of known ones.
    """
    if requested is None:
        return list(names)
    groups = groups or {}
    by_key = {name.lower(): [name] for name in names} | {group.lower(): list(members) for group, members in groups.items()}
    chosen: set[str] = set()
    for item in (part.strip() for part in requested.split(",")):
        if item.lower() not in by_key:
            known = ", ".join([*names, *groups])
            raise CaptureError(f"unknown --subset {item!r} for --dataset {dataset} (choose from {known})")
        chosen.update(by_key[item.lower()])
    return [name for name in names if name in chosen]
