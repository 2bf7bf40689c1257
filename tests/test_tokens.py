"""fasttito.TokenIds: a zero-copy, read-only view of ids held in Rust."""

from __future__ import annotations

import collections.abc
import gc

import numpy as np
import pytest
from fasttito import TokenIds


def test_sequence_protocol() -> None:
    ids = TokenIds([5, 0, 2**32 - 1, 5])
    assert isinstance(ids, collections.abc.Sequence)
    assert len(ids) == 4 and ids[0] == 5 and ids[-2] == 2**32 - 1
    assert ids[1:3] == [0, 2**32 - 1] and ids[::-1] == [5, 2**32 - 1, 0, 5]
    assert list(ids) == ids.tolist() == [5, 0, 2**32 - 1, 5]
    assert (
        ids == [5, 0, 2**32 - 1, 5]
        and ids == (5, 0, 2**32 - 1, 5)
        and ids == TokenIds(ids.tolist())
    )
    assert ids != [5, 0] and ids != "not ids"
    assert 0 in ids and 7 not in ids and -1 not in ids
    assert ids.count(5) == 2 and ids.index(0) == 1
    # The concatenations are the point: they pin TokenIds.__add__ and __radd__ (ruff RUF005).
    assert ids + [1] == [5, 0, 2**32 - 1, 5, 1]  # noqa: RUF005
    assert [1] + ids == [1, 5, 0, 2**32 - 1, 5]  # noqa: RUF005
    with pytest.raises(IndexError):
        ids[4]
    with pytest.raises(ValueError):
        ids.index(9)
    assert repr(TokenIds(list(range(10)))) == "TokenIds([0, 1, 2, 3, 4, 5, 6, 7, ...], len=10)"


def test_buffer_is_zero_copy_uint32_and_outlives_the_object() -> None:
    ids = TokenIds(list(range(100_000)))
    view = memoryview(ids)
    assert (view.format, view.itemsize, view.shape, view.readonly) == ("I", 4, (100_000,), True)
    arr = np.frombuffer(ids, dtype=np.uint32)
    assert arr.sum() == sum(range(100_000))
    del ids
    gc.collect()
    assert view[99_999] == 99_999 and arr[-1] == 99_999  # the views keep the buffer alive
    with pytest.raises(ValueError, match="WRITEABLE"):
        np.frombuffer(TokenIds([1]), dtype=np.uint32).setflags(write=True)
