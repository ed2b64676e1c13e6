"""What the benchmark scripts share: timing a callable and writing the results JSON.

Imported by the scripts in this folder as `bench_common` (Python puts a script's own folder first
on sys.path)."""
from __future__ import annotations

import json
import statistics
import time
from pathlib import Path
from typing import Any, Callable


def time_once(run: Callable[[], Any]) -> float:
    """Wall time of one `run()`."""
    start = time.perf_counter()
    run()
    return time.perf_counter() - start


def median_seconds(run: Callable[[], Any], repeats: int, warmup: int = 1) -> float:
    """Median wall time of `run()` over `repeats` calls, after `warmup` untimed calls."""
    for _ in range(warmup):
        run()
    return statistics.median(time_once(run) for _ in range(repeats))


def fastest_seconds(run: Callable[[], Any], repeats: int, warmup: int = 2) -> float:
    """Shortest wall time of `run()` over `repeats` calls, after `warmup` untimed calls: what the
    machine can do, for capability figures such as a matmul's GFLOP/s."""
    for _ in range(warmup):
        run()
    return min(time_once(run) for _ in range(repeats))


def write_results(results: dict, output: str | Path) -> None:
    """Write `results` as indented JSON to `output` (folders made as needed) and print it as the
    script's one JSON line."""
    Path(output).parent.mkdir(parents=True, exist_ok=True)
    Path(output).write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results))
