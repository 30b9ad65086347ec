"""Run folders: resolved config, status, checkpoints, tables, plots, ``report.md``/``report.html``.

Life cycle (:meth:`RunFolder.open`, used by every command through
:func:`gridrecourse.cli_common.open_run`):

1. before any work the folder is checked (an ``--out`` that is a file, not writable, or holds
   another run is refused unless resuming/overwriting), ``config.json`` (the resolved settings)
   and ``status.json`` (``running``) are written and a stale ``result.json`` is removed;
2. long phases store checkpoints (:meth:`RunFolder.save_checkpoint`) that a ``--resume`` run
   reuses (:meth:`RunFolder.load_checkpoint`);
3. :meth:`RunFolder.write_result` writes the tables' report, ``report.html`` and then
   ``result.json`` (last) and sets the status to ``done``; an interrupt or an error sets
   ``interrupted`` / ``failed``.

Every file is written atomically (temporary file + ``os.replace``), so an interrupted run never
leaves a file that looks complete.
"""

from __future__ import annotations

import dataclasses
import json
import os
import pickle
import shutil
import tempfile
from collections.abc import Callable
from datetime import datetime, timezone
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gridrecourse.errors import GridRecourseError

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd

RESULT_FILE = "result.json"
CONFIG_FILE = "config.json"
STATUS_FILE = "status.json"
REPORT_FILE = "report.md"
HTML_FILE = "report.html"
SOLVER_LOG_FILE = "solver.log"
CHECKPOINT_DIR = "checkpoints"
#: Config keys that may differ between a run and its ``--resume`` (they do not change results).
RESUME_NEUTRAL_KEYS = frozenset(
    {
        "created_utc",
        "json",
        "quiet",
        "resume",
        "overwrite",
        "out",
        "argv",
        "workers",
        "executor",
        "given_options",
        "option_flags",
    }
)
#: The options a ``--resume`` run must repeat (written by :meth:`RunFolder.open`).
OPTIONS_FILE = "options.json"


class RunStatus(str, Enum):
    """State of a run folder (``status.json``)."""

    RUNNING = "running"
    INTERRUPTED = "interrupted"
    FAILED = "failed"
    DONE = "done"


class OutMode(str, Enum):
    """What to do with an ``--out`` folder that already holds a run."""

    NEW = "new"  #: refuse a used folder
    RESUME = "resume"  #: continue the run in it (same command and settings)
    OVERWRITE = "overwrite"  #: delete the old run's files first


class RunFolderError(GridRecourseError, ValueError):
    """The run folder cannot be used (names ``--out`` / ``--resume`` and the reason)."""


def to_jsonable(value: Any) -> Any:
    """Convert dataclasses, numpy scalars/arrays, enums and paths to JSON-compatible values."""
    import numpy as np

    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: to_jsonable(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, dict):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        items = sorted(value, key=str) if isinstance(value, (set, frozenset)) else value
        return [to_jsonable(v) for v in items]
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


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (temporary file in the same folder + rename)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` atomically."""
    atomic_write_bytes(path, text.encode("utf-8"))


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def tidy_table(table: pd.DataFrame) -> tuple[pd.DataFrame, dict[str, pd.DataFrame]]:
    """Split array-valued columns out of ``table`` into long tables (no numpy reprs in CSVs).

    Returns the table without those columns and, per such column, a long table with columns
    ``row``, ``position``, ``<column>``.
    """
    import numpy as np
    import pandas as pd

    keep = table.copy()
    long: dict[str, pd.DataFrame] = {}
    for col in table.columns:
        values = table[col]
        if values.dtype != object or not len(values):
            continue
        if not any(isinstance(v, (np.ndarray, list, tuple)) for v in values):
            continue
        rows = []
        for i, v in enumerate(values):
            for j, x in enumerate(np.atleast_1d(np.asarray(v))):
                rows.append((i, j, x.item() if isinstance(x, np.generic) else x))
        long[str(col)] = pd.DataFrame(rows, columns=["row", "position", str(col)])
        keep = keep.drop(columns=col)
    return keep, long


class PhaseCheckpoint:
    """A :class:`~gridrecourse.checkpointing.Checkpoint` in a run folder (atomic pickle).

    ``load`` returns the state only when the run is a ``--resume`` (a new run starts anew).
    Made by :meth:`RunFolder.checkpoint`.
    """

    def __init__(
        self,
        folder: RunFolder,
        name: str,
        describe: Callable[[Any], str] | None = None,
        announce: Callable[[str], None] | None = None,
    ):
        self.folder, self.name = folder, name
        self.describe, self.announce = describe, announce

    def load(self) -> Any | None:
        """The stored state when resuming (None otherwise); recorded in ``folder.reused``."""
        value = self.folder.load_checkpoint(self.name, self.describe)
        if value is not None and self.announce is not None:
            self.announce(self.folder.reused[-1])
        return value

    def save(self, state: Any) -> None:
        """Store ``state`` atomically (the previous state survives an interrupt)."""
        self.folder.save_checkpoint(self.name, state)

    def child(self, name: str) -> FileCheckpoint:
        """A checkpoint of one part of this phase (``checkpoints/<phase>-<name>.pkl``) that can
        be sent to a worker process (:func:`~gridrecourse.checkpointing.child_checkpoint`)."""
        return self.folder.checkpoint_file(f"{self.name}-{name}")


class FileCheckpoint:
    """A :class:`~gridrecourse.checkpointing.Checkpoint` in one file of a run folder (atomic
    pickle): a path and whether the run resumes, so it pickles to worker processes, which save
    and load it themselves (e.g. one bounds replication's L-shaped loop). Every checkpoint file
    of a run folder is read and written through it.

    Parameters
    ----------
    path : Path
    resume : bool
        Whether :meth:`load` returns a stored state (a new run starts anew).
    """

    def __init__(self, path: Path, resume: bool):
        self.path, self.resume = Path(path), bool(resume)

    def load(self) -> Any | None:
        """The stored state when resuming (None when absent, unreadable or not resuming)."""
        if not self.resume or not self.path.exists():
            return None
        try:
            return pickle.loads(self.path.read_bytes())
        except Exception:
            return None

    def save(self, state: Any) -> None:
        """Store ``state`` atomically."""
        atomic_write_bytes(self.path, pickle.dumps(state))


class RunFolder:
    """A folder collecting one run's outputs.

    ``RunFolder(path, command)`` just creates the folder (kept for commands that have not
    adopted the life cycle yet); :meth:`open` is the checked life cycle.

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
        self.config: dict[str, Any] = {}
        self.resumed = False
        self.reused: list[str] = []
        self.provenance: dict[str, Any] = {}

    # ------------------------------------------------------------------ life cycle
    @staticmethod
    def default_path(command: str, feeder: str, root: Path = Path("runs")) -> Path:
        """``runs/<command>-<feeder>-<UTC timestamp>``."""
        stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
        safe = "".join(c if c.isalnum() or c in "-_" else "_" for c in Path(str(feeder)).stem)
        path = root / f"{command}-{safe}-{stamp}"
        n = 1
        while path.exists():  # two runs in the same second get their own folders
            n += 1
            path = root / f"{command}-{safe}-{stamp}-{n}"
        return path

    @staticmethod
    def holds_run(path: Path) -> bool:
        """True when ``path`` has a run's config, status or result."""
        files = (CONFIG_FILE, STATUS_FILE, RESULT_FILE, OPTIONS_FILE)
        return any((path / f).exists() for f in files)

    @classmethod
    def check_out(cls, path: Path, mode: OutMode, option: str = "--out") -> None:
        """Refuse an unusable folder before any work (see :meth:`open`)."""
        path = Path(path)
        if path.exists() and not path.is_dir():
            raise RunFolderError(f"{option} {path}: exists and is not a folder")
        if mode is OutMode.RESUME:
            if not path.is_dir() or not (path / OPTIONS_FILE).exists():
                raise RunFolderError(f"--resume {path}: no run folder there (no {OPTIONS_FILE})")
        elif mode is OutMode.NEW and path.is_dir() and any(path.iterdir()):
            what = "a run" if cls.holds_run(path) else "files"
            status = cls.read_status(path)
            state = f" (status {status})" if status else ""
            raise RunFolderError(
                f"{option} {path}: already holds {what}{state}; pass --resume {path} to continue "
                "it, --overwrite to replace it, or choose another folder"
            )
        probe = path if path.exists() else next(p for p in path.parents if p.exists())
        if not probe.is_dir():
            raise RunFolderError(f"{option} {path}: {probe} is a file, not a folder")
        if not os.access(probe, os.W_OK | os.X_OK):
            raise RunFolderError(f"{option} {path}: {probe} is not writable")

    @staticmethod
    def read_status(path: Path) -> str | None:
        """The ``status`` in ``path/status.json`` (None when absent or unreadable)."""
        try:
            return json.loads((Path(path) / STATUS_FILE).read_text())["status"]
        except (OSError, ValueError, KeyError, TypeError):
            return None

    @classmethod
    def open(
        cls,
        path: Path,
        command: str,
        config: dict[str, Any],
        mode: OutMode = OutMode.NEW,
        provenance: dict[str, Any] | None = None,
    ) -> RunFolder:
        """Check, create and start a run folder before any work.

        Parameters
        ----------
        path : Path
            The folder.
        command : str
            Command name.
        config : dict
            Resolved settings; with :attr:`OutMode.RESUME` they must equal the stored ones
            (except :data:`RESUME_NEUTRAL_KEYS`).
        mode : OutMode
            New folder, resume, or overwrite.
        provenance : dict, optional
            Command line, versions, data (shown in the report).

        Raises
        ------
        RunFolderError
            The folder is a file, not writable, holds another run (``NEW``), holds no run or a
            run of other settings (``RESUME``).
        """
        path = Path(path)
        option = "--resume" if mode is OutMode.RESUME else "--out"
        cls.check_out(path, mode, option)
        payload = {"command": command, **to_jsonable(config)}
        if mode is OutMode.RESUME:
            try:
                stored = json.loads((path / OPTIONS_FILE).read_text())
            except (OSError, ValueError) as exc:
                raise RunFolderError(f"--resume {path}: unreadable {OPTIONS_FILE}: {exc}") from exc
            keys = (set(stored) | set(payload)) - RESUME_NEUTRAL_KEYS
            differ = sorted(k for k in keys if stored.get(k) != payload.get(k))
            if differ:
                shown = ", ".join(
                    f"{k} (stored {stored.get(k)!r}, now {payload.get(k)!r})" for k in differ
                )
                raise RunFolderError(
                    f"--resume {path}: the run there has other settings: {shown}; resume with "
                    "the same options or start a new --out"
                )
        elif mode is OutMode.OVERWRITE and path.is_dir():
            for child in path.iterdir():
                if child.is_dir() and not child.is_symlink():
                    shutil.rmtree(child)
                else:
                    child.unlink()
        try:
            path.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise RunFolderError(f"{option} {path}: cannot create the folder: {exc}") from exc
        folder = cls(path, command)
        folder.resumed = mode is OutMode.RESUME
        folder.provenance = dict(provenance or {})
        (path / RESULT_FILE).unlink(missing_ok=True)  # nothing stale looks complete
        folder.config = payload
        if not folder.resumed:
            atomic_write_text(path / OPTIONS_FILE, json.dumps(payload, indent=2))
            folder.write_config(config)
        folder.set_status(RunStatus.RUNNING)
        return folder

    def set_status(self, status: RunStatus, message: str | None = None) -> None:
        """Write ``status.json`` (status, time, optional message, checkpoints reused)."""
        payload: dict[str, Any] = {
            "status": RunStatus(status).value,
            "command": self.command,
            "updated_utc": _now(),
        }
        if message:
            payload["message"] = message
        if self.reused:
            payload["reused"] = list(self.reused)
        atomic_write_text(self.path / STATUS_FILE, json.dumps(payload, indent=2))

    @property
    def solver_log(self) -> Path:
        """The file HiGHS logs go to."""
        return self.path / SOLVER_LOG_FILE

    # ------------------------------------------------------------------ checkpoints
    def _checkpoint_path(self, name: str) -> Path:
        safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in name)
        return self.path / CHECKPOINT_DIR / f"{safe}.pkl"

    def checkpoint_file(self, name: str) -> FileCheckpoint:
        """The file ``checkpoints/<name>.pkl`` (read only when the run resumes)."""
        return FileCheckpoint(self._checkpoint_path(name), self.resumed)

    def save_checkpoint(self, name: str, value: Any) -> None:
        """Store a finished phase's result (atomically; pickled)."""
        self.checkpoint_file(name).save(value)

    def load_checkpoint(
        self, name: str, describe: Callable[[Any], str] | None = None
    ) -> Any | None:
        """A stored phase's result when resuming (None when absent or not resuming).

        ``describe(value)`` (default: the phase's name) is added to :attr:`reused`.
        """
        value = self.checkpoint_file(name).load()
        if value is not None:
            self.reused.append(name if describe is None else describe(value))
        return value

    def checkpoint(
        self,
        name: str,
        describe: Callable[[Any], str] | None = None,
        announce: Callable[[str], None] | None = None,
    ) -> PhaseCheckpoint:
        """A method's iteration checkpoint stored here (``solve_spar(checkpoint=...)``).

        Parameters
        ----------
        name : str
            Checkpoint file name (``checkpoints/<name>.pkl``).
        describe : callable, optional
            ``describe(state)``: what a resume reused (``"SPAR iterations 1-37 of 60"``), added
            to :attr:`reused`.
        announce : callable, optional
            Called with that text when a state is reused (the CLI prints it on stderr).
        """
        return PhaseCheckpoint(self, name, describe, announce)

    # ------------------------------------------------------------------ outputs
    def write_config(self, config: dict[str, Any]) -> Path:
        """Write the resolved configuration."""
        payload = {
            "command": self.command,
            "created_utc": _now(),
            **to_jsonable(config),
        }
        self.config = payload
        target = self.path / CONFIG_FILE
        atomic_write_text(target, json.dumps(payload, indent=2))
        return target

    def write_table(self, name: str, table: pd.DataFrame) -> Path:
        """Write a table as ``name.csv`` (plain numbers) and ``name.parquet`` when possible.

        Array-valued columns go to long tables ``name_<column>.csv`` (:func:`tidy_table`).
        """
        table, long = tidy_table(table)
        target = self.path / f"{name}.csv"
        atomic_write_text(target, table.to_csv(index=False))
        self._parquet(name, table)
        for col, frame in long.items():
            atomic_write_text(self.path / f"{name}_{col}.csv", frame.to_csv(index=False))
            self._parquet(f"{name}_{col}", frame)
        return target

    def _parquet(self, name: str, table: pd.DataFrame) -> None:
        try:
            import io

            buffer = io.BytesIO()
            table.to_parquet(buffer, index=False)
        except (ImportError, ValueError, TypeError, AttributeError):
            return  # no parquet engine, or mixed-type columns: the CSV is the table
        except Exception:
            return
        atomic_write_bytes(self.path / f"{name}.parquet", buffer.getvalue())

    def add_report(self, markdown: str) -> None:
        """Append a section (Markdown: headings, lists, pipe tables, images) to the report."""
        self._report.append(markdown.rstrip() + "\n")

    def write_result(self, result: Any) -> Path:
        """Write ``report.md``, ``report.html`` and then ``result.json``; status ``done``."""
        from gridrecourse.report.html import render_report, report_markdown

        markdown = report_markdown(self._report, self.provenance)
        atomic_write_text(self.path / REPORT_FILE, markdown)
        atomic_write_text(self.path / HTML_FILE, render_report(markdown, self.path))
        target = self.path / RESULT_FILE
        atomic_write_text(target, json.dumps(to_jsonable(result), indent=2))
        self.set_status(RunStatus.DONE)
        return target
