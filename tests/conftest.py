"""Shared fixtures: the IEEE feeder folder (``../shared/feeders``) and tiny hand-made feeders."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from gridrecourse.network.loading import feeder_directory

#: Set in CI: a missing feeder folder is then an error, not a skip.
REQUIRE_SHARED_ENV = "GRIDRECOURSE_REQUIRE_SHARED"


@pytest.fixture(scope="session")
def feeder_dir() -> Path:
    """Folder with the IEEE OpenDSS test feeders."""
    folder = feeder_directory()
    if folder is None or not folder.is_dir():
        if os.environ.get(REQUIRE_SHARED_ENV):
            pytest.fail("../shared/feeders not found but GRIDRECOURSE_REQUIRE_SHARED is set")
        pytest.skip("IEEE feeder folder not available (set GRIDRECOURSE_FEEDER_DIR)")
    return folder


@pytest.fixture
def count_solves(monkeypatch):
    """Scenario indices of every ``SecondStageModel.solve`` call in the test (in order)."""
    from gridrecourse.problems.base import SecondStageModel

    calls: list[int] = []
    original = SecondStageModel.solve

    def counting(self, x, scenario, *args, **kwargs):
        calls.append(int(scenario))
        return original(self, x, scenario, *args, **kwargs)

    monkeypatch.setattr(SecondStageModel, "solve", counting)
    return calls
