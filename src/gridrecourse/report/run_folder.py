"""Run folders: resolved config, ``result.json``, tables, plots and a readable report.

Everything is written atomically (temporary file + ``os.replace``), so an interrupted run never
leaves a file that looks complete; ``result.json`` is written last and marks a finished run.
"""

from __future__ import annotations

import dataclasses
import json
import os
import tempfile
from datetime import datetime, timezone
from enum import Enum
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

RESULT_FILE = "result.json"
CONFIG_FILE = "config.json"
REPORT_FILE = "report.md"


def to_jsonable(value: Any) -> Any:
    """Convert dataclasses, numpy scalars/arrays, enums and paths to JSON-compatible values."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: to_jsonable(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, dict):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_jsonable(v) for v in value]
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, np.ndarray):
        return to_jsonable(value.tolist())
    if isinstance(value, np.generic):
        return to_jsonable(value.item())
    if isinstance(value, float) and not np.isfinite(value):
        return None if np.isnan(value) else ("inf" if value > 0 else "-inf")
    if isinstance(value, Path):
        return str(value)
    return value


def atomic_write_text(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


class RunFolder:
    """A folder collecting one run's outputs.

    Parameters
    ----------
    path : Path
        Folder to create (parents too).
    command : str
        The command that produced the run (recorded in the config).
    """

    def __init__(self, path: Path, command: str):
        self.path = Path(path)
        self.path.mkdir(parents=True, exist_ok=True)
        self.command = command
        self._report: list[str] = []

    @staticmethod
    def default_path(command: str, feeder: str, root: Path = Path("runs")) -> Path:
        """``runs/<command>-<feeder>-<UTC timestamp>``."""
        stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
        safe = "".join(c if c.isalnum() or c in "-_" else "_" for c in feeder)
        return root / f"{command}-{safe}-{stamp}"

    def write_config(self, config: dict[str, Any]) -> Path:
        """Write the resolved configuration."""
        payload = {
            "command": self.command,
            "created_utc": datetime.now(timezone.utc).isoformat(),
            **to_jsonable(config),
        }
        target = self.path / CONFIG_FILE
        atomic_write_text(target, json.dumps(payload, indent=2))
        return target

    def write_table(self, name: str, table: pd.DataFrame) -> Path:
        """Write a table as CSV (``name.csv``)."""
        target = self.path / f"{name}.csv"
        atomic_write_text(target, table.to_csv(index=False))
        return target

    def add_report(self, markdown: str) -> None:
        """Append a section to the readable report."""
        self._report.append(markdown.rstrip() + "\n")

    def write_result(self, result: Any) -> Path:
        """Write ``report.md`` and then ``result.json`` (last: it marks a complete run)."""
        atomic_write_text(self.path / REPORT_FILE, "\n".join(self._report))
        target = self.path / RESULT_FILE
        atomic_write_text(target, json.dumps(to_jsonable(result), indent=2))
        return target
