"""Running a function over a stream of items in a pool of threads, ahead of the consumer, with the
results handed out in input order and a fixed bound on the work in flight.

The prediction loop uses it to decode and preprocess images while the model runs: OpenCV's
decoding and resizing, file reads and most numpy arithmetic release the GIL, and so does
onnxruntime's `run`, so threads overlap them without the copies that processes would need. The
input is consumed lazily (a generator over a folder of a million files is never listed whole) and
at most `ahead` items are submitted and not yet handed out, so memory does not grow with the
input. No torch."""
from __future__ import annotations

import functools
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Callable, Iterable, Iterator, TypeVar

Item = TypeVar("Item")
Result = TypeVar("Result")


def ordered_map(function: Callable[[Item], Result], items: Iterable[Item], workers: int,
                ahead: int) -> Iterator[tuple[Item, Callable[[], Result]]]:
    """(item, get) for every item, in input order; `get()` returns `function(item)` or raises what
    it raised. With `workers` 0 the function runs in the consumer's thread when `get` is called;
    otherwise `workers` threads run it, at most `ahead` (>= 1) items being submitted and not yet
    handed out. Closing the iterator early cancels the items not started."""
    if workers < 0 or ahead < 1:
        raise ValueError(f"ordered_map needs workers >= 0 and ahead >= 1, got {workers}, {ahead}")
    if workers == 0:
        for item in items:
            yield item, functools.partial(function, item)
        return
    iterator = iter(items)
    window: deque[tuple[Item, Future]] = deque()
    pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="ppq2l-preprocess")
    try:
        def submit_next() -> None:
            for item in iterator:  # at most one item: returns after the first
                window.append((item, pool.submit(function, item)))
                return

        for _ in range(ahead):
            submit_next()
        while window:
            item, future = window.popleft()
            submit_next()  # keep the window full while this result is consumed
            yield item, future.result
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
