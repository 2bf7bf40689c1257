"""``TokenIds``: token ids that stay in Rust (zero-copy buffer + read-only sequence).

>>> from fasttito.tokens import TokenIds
>>> ids = TokenIds([1, 2, 3])
>>> ids == [1, 2, 3], len(ids), ids[-1], memoryview(ids).format
(True, 3, 3, 'I')
"""

from __future__ import annotations

from collections.abc import Sequence

from fasttito._core import TokenIds

__all__ = ["TokenIds"]

# A read-only sequence of ints: isinstance(ids, Sequence) holds, like list and tuple.
Sequence.register(TokenIds)
