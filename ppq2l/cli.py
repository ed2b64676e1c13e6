"""Running a tool's main function: user mistakes print one clear line instead of a traceback."""
from __future__ import annotations

import sys
from typing import Callable, Sequence

from ppq2l.errors import Ppq2lError


def run_cli(main: Callable[[Sequence[str] | None], object], argv: Sequence[str] | None = None) -> int:
    """Call `main(argv)`; a Ppq2lError is printed as `error: ...` and gives exit status 2."""
    try:
        main(argv)
    except Ppq2lError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    return 0
