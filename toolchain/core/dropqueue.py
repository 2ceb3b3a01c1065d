"""A bounded queue between one producer thread and one consumer, with a stated policy for when it is full.

Why its own class: a video pipeline has two such hand-overs (decoded frames waiting for inference,
results waiting for the application) and both need the same three things: memory that never grows,
a choice between waiting and dropping (``never``: a file loses no frame, its producer waits;
``oldest``: a camera does not wait, so the oldest undelivered item goes and is counted), and an end
that a waiting consumer notices (the producer finished, or someone closed the queue).
"""

from __future__ import annotations

import collections
import threading
from typing import Any

DROP_POLICIES = ("never", "oldest")


class DropQueue:
    """At most ``capacity`` items; when full, ``put`` waits (``drop="never"``) or drops the oldest (``"oldest"``)."""

    def __init__(self, capacity: int, drop: str):
        if capacity < 1:
            raise ValueError(f"a queue must hold at least one item, got capacity {capacity}")
        if drop not in DROP_POLICIES:
            raise ValueError(f"drop must be one of {', '.join(DROP_POLICIES)}, got {drop!r}")
        self.capacity, self.drop = capacity, drop
        self.dropped = 0
        self._items: collections.deque = collections.deque()
        self._cond = threading.Condition()
        self._finished = self._closed = False

    def __len__(self) -> int:
        return len(self._items)

    @property
    def closed(self) -> bool:
        return self._closed

    def put(self, item: Any) -> bool:
        """Add ``item`` (waiting or dropping while full); False when the queue was closed instead."""
        with self._cond:
            while len(self._items) >= self.capacity and not self._closed:
                if self.drop == "oldest":
                    self._items.popleft()
                    self.dropped += 1
                else:
                    self._cond.wait(0.1)
            if self._closed:
                return False
            self._items.append(item)
            self._cond.notify_all()
            return True

    def get(self) -> Any | None:
        """The oldest item, waiting for one; None once the producer finished (or the queue closed) and it is empty."""
        with self._cond:
            while not self._items and not self._finished and not self._closed:
                self._cond.wait(0.1)
            if not self._items:
                return None
            item = self._items.popleft()
            self._cond.notify_all()
            return item

    def finish(self) -> None:
        """The producer has no more items: a consumer reads what is left, then gets None."""
        with self._cond:
            self._finished = True
            self._cond.notify_all()

    def close(self) -> None:
        """Stop both sides: a waiting ``put`` returns False, a waiting ``get`` returns what is left, then None."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()
