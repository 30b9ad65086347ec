"""Interrupts for the checkpoint tests (methods, evaluation): a stand-in for Ctrl-C."""

from __future__ import annotations

from gridrecourse.checkpointing import MemoryCheckpoint


class Interrupt(Exception):
    """Stands for Ctrl-C in the middle of a run."""


class InterruptAfterSaves(MemoryCheckpoint):
    """Stores the state, then raises :class:`Interrupt` at the ``k``-th save (interrupted
    right after the ``k``-th checkpoint was written)."""

    def __init__(self, k: int):
        super().__init__()
        self.k = k

    def save(self, state) -> None:
        super().save(state)
        if self.saves == self.k:
            raise Interrupt(f"after save {self.k}")
