"""The bounded hand-over between a video pipeline's threads: memory bounded, policy kept, ends noticed."""

import threading
import time

import pytest

from toolchain.core.dropqueue import DropQueue


def test_oldest_policy_keeps_the_newest_items_and_counts_the_rest():
    q = DropQueue(3, "oldest")
    for i in range(10):
        assert q.put(i)
    assert len(q) == 3 and q.dropped == 7
    q.finish()
    assert [q.get(), q.get(), q.get(), q.get()] == [7, 8, 9, None]


def test_never_policy_makes_the_producer_wait_and_loses_nothing():
    q = DropQueue(2, "never")
    produced = []

    def produce():
        for i in range(6):
            q.put(i)
            produced.append(i)
        q.finish()

    thread = threading.Thread(target=produce, daemon=True)
    thread.start()
    deadline = time.monotonic() + 5
    while len(produced) < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    time.sleep(0.3)
    assert produced == [0, 1] and len(q) == 2  # blocked on the third item, the queue full
    got = []
    while (item := q.get()) is not None:
        got.append(item)
    thread.join(5)
    assert got == list(range(6)) and q.dropped == 0


def test_close_releases_a_waiting_producer_and_a_waiting_consumer():
    full = DropQueue(1, "never")
    full.put("a")
    result = []
    waiter = threading.Thread(target=lambda: result.append(full.put("b")), daemon=True)
    waiter.start()
    time.sleep(0.2)
    assert waiter.is_alive()
    full.close()
    waiter.join(5)
    assert result == [False]
    assert full.get() == "a" and full.get() is None  # what is left, then the end

    empty = DropQueue(1, "oldest")
    got = []
    reader = threading.Thread(target=lambda: got.append(empty.get()), daemon=True)
    reader.start()
    time.sleep(0.2)
    assert reader.is_alive()
    empty.close()
    reader.join(5)
    assert got == [None]


@pytest.mark.parametrize("capacity, drop", [(0, "never"), (2, "newest")])
def test_bad_settings_are_refused(capacity, drop):
    with pytest.raises(ValueError):
        DropQueue(capacity, drop)
