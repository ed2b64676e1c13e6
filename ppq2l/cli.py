"""Running a tool's main function: user mistakes print one clear line instead of a traceback."""
from __future__ import annotations

import sys
from typing import Callable, Sequence

from ppq2l.errors import Ppq2lError, RunStopped


def run_cli(main: Callable[[Sequence[str] | None], object], argv: Sequence[str] | None = None) -> int:
    """Call `main(argv)`; a Ppq2lError is printed as `error: ...` and gives exit status 2, a run
    stopped by a signal (after saving) exits with 128 + the signal number."""
    try:
        main(argv)
    except Ppq2lError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except RunStopped as stop:
        print(f"stopped: {stop}", file=sys.stderr)
        return 128 + stop.signum
    return 0
