"""ordered_map: results in input order whatever the thread timing, errors raised where the result
is taken, the input read lazily with a fixed bound on the work in flight, and an early stop
cancelling what was not started."""
import threading
import time

import pytest

from ppq2l.utils.prefetch import ordered_map


class CountingInput:
    """An input generator that counts the items taken from it."""

    def __init__(self, count):
        self.count, self.taken = count, 0

    def __iter__(self):
        for index in range(self.count):
            self.taken += 1
            yield index


def slow_square(index):
    time.sleep(0.002 * (index % 3))  # later items finish first now and then
    if index == 5:
        raise ValueError("five")
    return index * index


@pytest.mark.parametrize("workers", [0, 1, 3])
def test_results_come_in_input_order_and_errors_at_their_item(workers):
    seen = []
    for item, get in ordered_map(slow_square, range(12), workers, ahead=4):
        if item == 5:
            with pytest.raises(ValueError, match="five"):
                get()
        else:
            seen.append((item, get()))
    assert seen == [(index, index * index) for index in range(12) if index != 5]


@pytest.mark.parametrize("workers,ahead", [(0, 1), (2, 3), (4, 10)])
def test_the_input_is_read_lazily_within_the_bound(workers, ahead):
    source = CountingInput(1000)
    handed = 0
    for _, get in ordered_map(lambda index: index, source, workers, ahead):
        get()
        handed += 1
        # the one handed out plus at most `ahead` submitted behind it (none ahead without threads)
        assert source.taken <= handed + (ahead if workers else 0)
    assert handed == source.taken == 1000


def test_no_more_than_ahead_items_are_processed_before_they_are_consumed():
    started = []
    release = threading.Event()

    def blocked(index):
        started.append(index)
        release.wait(5)
        return index

    stream = ordered_map(blocked, range(100), workers=8, ahead=5)
    first = next(stream)
    time.sleep(0.1)  # 8 threads could start far more items if the window let them
    assert len(started) <= 6 and first[0] == 0
    release.set()
    assert [item for item, _ in stream] == list(range(1, 100))


def test_closing_early_cancels_the_items_not_started():
    calls = []

    def record(index):
        calls.append(index)
        time.sleep(0.01)
        return index

    stream = ordered_map(record, range(10_000), workers=2, ahead=4)
    assert [next(stream)[0] for _ in range(3)] == [0, 1, 2]
    stream.close()
    assert len(calls) <= 3 + 4 + 1


def test_bad_arguments_are_refused():
    with pytest.raises(ValueError, match="workers >= 0 and ahead >= 1"):
        list(ordered_map(abs, [1], workers=-1, ahead=1))
    with pytest.raises(ValueError, match="workers >= 0 and ahead >= 1"):
        list(ordered_map(abs, [1], workers=1, ahead=0))
