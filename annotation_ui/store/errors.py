"""The store's errors, and the one argument check every handler shares (an item id)."""

from __future__ import annotations

from typing import Any


class StoreError(ValueError):
    """A request the store refuses; the message says what is wrong and what was expected."""


class SubmissionError(StoreError):
    """A submission that cannot be stored as sent (nothing was written)."""


class AccessError(StoreError):
    """The caller may not do this (unknown/disabled user, wrong role, someone else's item)."""


class WouldBlock(Exception):
    """Raised inside :meth:`Store.nowait` when a write would have to wait for another writer.
    Nothing was written; the same call made normally (in a thread that may wait) is safe."""


def as_item_id(item_id: Any) -> int:
    """An item id as an int; SubmissionError for anything that is not a whole number."""
    try:
        if isinstance(item_id, bool):
            raise ValueError
        if isinstance(item_id, float) and not item_id.is_integer():
            raise ValueError
        return int(item_id)
    except (TypeError, ValueError):
        raise SubmissionError(f"item id must be an integer, got {item_id!r}") from None
