"""Every registered family runs the adapter conformance suite and has exactly one tiny model in the registry."""

from __future__ import annotations

import re
from pathlib import Path

from capture.families import ADAPTERS
from capture.registry import TINY_MODELS


def test_every_family_subclasses_the_conformance_suite():
    sources = "\n".join(path.read_text() for path in Path(__file__).parent.glob("test_*.py"))
    covered = set(re.findall(r"class \w+\(FamilyAdapterTests\):\n    family = \"(\w+)\"", sources))
    assert covered == set(ADAPTERS)


def test_every_family_has_one_tiny_model():
    assert sorted(TINY_MODELS.values()) == sorted(ADAPTERS)
