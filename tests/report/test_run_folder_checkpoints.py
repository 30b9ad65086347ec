"""A run folder's checkpoint parts (``PhaseCheckpoint.child``): files that worker processes
write themselves, read back only when the run resumes."""

from __future__ import annotations

import pickle
from concurrent.futures import ProcessPoolExecutor

from gridrecourse.checkpointing import MemoryCheckpoint, child_checkpoint
from gridrecourse.report.run_folder import FileCheckpoint, RunFolder


def _save_in_worker(part: FileCheckpoint) -> str:
    part.save({"iteration": 7})
    return str(part.path)


def test_part_written_by_a_worker_process_is_found_when_resuming(tmp_path):
    folder = RunFolder(tmp_path / "run", "siting")
    part = child_checkpoint(folder.checkpoint("bounds-replications"), "l-shaped-1")
    assert isinstance(part, FileCheckpoint)
    assert part.path.name == "bounds-replications-l-shaped-1.pkl"
    assert pickle.loads(pickle.dumps(part)).path == part.path  # can be sent to a worker
    with ProcessPoolExecutor(1) as pool:
        written = pool.submit(_save_in_worker, part).result()
    assert written == str(part.path) and part.path.exists()
    assert part.load() is None  # a new run does not read it
    folder.resumed = True
    again = child_checkpoint(folder.checkpoint("bounds-replications"), "l-shaped-1")
    assert again.load() == {"iteration": 7}
    part.path.write_bytes(b"not a pickle")  # a torn file is no state, not a crash
    assert again.load() is None


def test_memory_checkpoint_parts_and_checkpoints_without_parts():
    store = MemoryCheckpoint()
    part = child_checkpoint(store, "a")
    assert part is child_checkpoint(store, "a") and part is not child_checkpoint(store, "b")
    part.save(3)
    assert store.child("a").load() == 3 and store.load() is None
    assert child_checkpoint(None, "a") is None

    class Plain:
        def load(self):
            return None

        def save(self, state):
            pass

    assert child_checkpoint(Plain(), "a") is None
