from __future__ import annotations

import numpy as np
import pytest

from capture.errors import CaptureError
from capture.selection import parse_layers, parse_token_sets, select_positions, streams_for
from store.schema import TokenKind


def test_parse_layers():
    assert parse_layers("all", 4) == (0, 1, 2, 3)
    assert parse_layers("0-1,3", 4) == (0, 1, 3)
    assert parse_layers("-1", 4) == (3,)
    with pytest.raises(CaptureError, match="out of range"):
        parse_layers("4", 4)
    with pytest.raises(CaptureError, match="expected"):
        parse_layers("a-b", 4)


def test_streams_include_final_raw_output_only_with_last_layer():
    assert streams_for((0, 3), 4) == (0, 3, 4)
    assert streams_for((0, 1), 4) == (0, 1)


def test_select_positions():
    kind = np.array([TokenKind.SPECIAL, TokenKind.IMAGE, TokenKind.IMAGE_NEWLINE, TokenKind.TEXT, TokenKind.SPECIAL])
    assert list(select_positions(kind, ("image",))) == [1, 2]
    assert list(select_positions(kind, ("text",))) == [0, 3, 4]
    assert list(select_positions(kind, ("image", "last"))) == [1, 2, 4]
    assert list(select_positions(kind, ("all",))) == [0, 1, 2, 3, 4]
    with pytest.raises(CaptureError):
        parse_token_sets("image,pixels")
