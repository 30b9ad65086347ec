"""Helpers shared by every command module: step progress on stderr and the JSON/human output.

Every ``cli_*`` module imports these from here, never from :mod:`gridrecourse.cli` (which
imports the command modules to register them), so the CLI has no import cycle.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable

from gridrecourse.report.run_folder import to_jsonable


class Progress:
    """Step-wise progress messages on stderr (silent when ``quiet``)."""

    def __init__(self, total: int, quiet: bool = False):
        self.total = total
        self.step = 0
        self.quiet = quiet
        self.t0 = time.perf_counter()

    def __call__(self, message: str) -> None:
        self.step += 1
        if not self.quiet:
            elapsed = time.perf_counter() - self.t0
            print(f"[{self.step}/{self.total}] {message} ({elapsed:.1f} s)", file=sys.stderr)


def emit(summary: dict, as_json: bool, human: Callable[[], None]) -> None:
    """Print one JSON object (``--json``) or the human-readable summary."""
    if as_json:
        print(json.dumps(to_jsonable(summary)))
    else:
        human()
