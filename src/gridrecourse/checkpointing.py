"""Checkpoints of long work: method iterations (SPAR, PH, SAA bounds replications) and the
blocks of the exact evaluation (:mod:`gridrecourse.evaluation.resumable`).

It sits next to :mod:`gridrecourse.execution`, below the evaluation and the methods, so both
use one protocol.

A method that can be resumed takes ``checkpoint``, an object with ``load()`` (the state stored
by an earlier, interrupted run, or None) and ``save(state)`` (store the state atomically). The
methods define their own state (:class:`~gridrecourse.methods.spar.SPARState`,
:class:`~gridrecourse.methods.progressive_hedging.PHState`, the finished replications of
:func:`~gridrecourse.methods.spar.spar_statistical_bounds`); the storage is the caller's. The
CLI passes :meth:`gridrecourse.report.run_folder.RunFolder.checkpoint` (an atomic pickle in the
run folder's ``checkpoints/``); :class:`MemoryCheckpoint` keeps the state in memory (tests,
notebooks).

Exactness. A resumed run gives exactly the result of an uninterrupted run with the same
settings: the state holds everything the rest of the run depends on (RNG state, slopes, step
counters, multipliers, histories), and at every checkpoint the solver models are rebuilt from
that state *in the uninterrupted run too*, so both runs continue from identical HiGHS models
with no warm start (a warm start can change which of several optimal vertices or duals HiGHS
returns). Checkpoints therefore sit at fixed iterations (every ``checkpoint_every``), never at
wall-clock times, and a run with checkpoints can differ from one without them in the last
digits of degenerate duals.
"""

from __future__ import annotations

import pickle
from typing import Any, Protocol, runtime_checkable

__all__ = ["Checkpoint", "LoadOnceCheckpoint", "MemoryCheckpoint", "child_checkpoint"]


@runtime_checkable
class Checkpoint(Protocol):
    """Where a method stores its state and finds it again when resumed."""

    def load(self) -> Any | None:
        """The stored state (None when there is none)."""
        ...

    def save(self, state: Any) -> None:
        """Store ``state`` (atomically: an interrupt leaves the previous state intact)."""
        ...


def child_checkpoint(checkpoint: Checkpoint | None, name: str) -> Checkpoint | None:
    """The checkpoint of part ``name`` of ``checkpoint``'s work (e.g. one replication's inner
    loop), or None when there is none or the checkpoint has no parts (``child(name)``).

    A part's checkpoint may be sent to the worker that runs the part: a run folder's
    (:meth:`~gridrecourse.report.run_folder.PhaseCheckpoint.child`) is a file the worker
    writes itself; a :class:`MemoryCheckpoint`'s keeps what is saved in the same process only.
    """
    child = getattr(checkpoint, "child", None)
    return None if child is None else child(name)


class MemoryCheckpoint:
    """A :class:`Checkpoint` in memory; states are stored pickled (as on disk: no aliasing).

    Attributes
    ----------
    saves : int
        Number of :meth:`save` calls.
    """

    def __init__(self) -> None:
        self._blob: bytes | None = None
        self._children: dict[str, MemoryCheckpoint] = {}
        self.saves = 0

    def child(self, name: str) -> MemoryCheckpoint:
        """The checkpoint of part ``name`` (the same object for the same name)."""
        return self._children.setdefault(name, MemoryCheckpoint())

    def load(self) -> Any | None:
        """The last saved state (a fresh copy), or None."""
        return None if self._blob is None else pickle.loads(self._blob)

    def save(self, state: Any) -> None:
        """Keep a pickled copy of ``state``."""
        self._blob = pickle.dumps(state)
        self.saves += 1


class LoadOnceCheckpoint:
    """A :class:`Checkpoint` that reads ``inner`` once and then answers from memory.

    For work that loads its checkpoint many times in one run (every exact evaluation of SPAR's
    polish rounds loads the evaluation checkpoint): the stored state is read (and, in a run
    folder, reported as reused) once; later :meth:`load` calls return the last state loaded or
    saved. Every :meth:`save` still goes to ``inner``. The returned state is shared, not
    copied: callers must not change it in place.

    Parameters
    ----------
    inner : Checkpoint
    """

    def __init__(self, inner: Checkpoint):
        self.inner = inner
        self._loaded = False
        self._state: Any | None = None

    def load(self) -> Any | None:
        """The inner checkpoint's state (read at the first call), or the last saved state."""
        if not self._loaded:
            self._state, self._loaded = self.inner.load(), True
        return self._state

    def save(self, state: Any) -> None:
        """Store ``state`` in ``inner`` and keep it for later :meth:`load` calls."""
        self.inner.save(state)
        self._state, self._loaded = state, True
