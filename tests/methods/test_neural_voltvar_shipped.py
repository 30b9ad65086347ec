"""The networks shipped with the package (IEEE 123 study case): load, metadata, refusals.

The shipped network must load without retraining, carry what it was trained on (feeder,
settings, data hash, sample counts, training curve), reproduce its surrogate MILP value at its
own decision through a plain forward pass, and refuse a feeder or setting it was not trained on.
"""

from __future__ import annotations

import numpy as np
import pytest

from gridrecourse.problems.volt_var import Monitor, VoltVarConfig, VoltVarProblem

pytest.importorskip("torch")

from gridrecourse.learning import voltvar_net
from gridrecourse.learning.voltvar_data import feature_map
from gridrecourse.learning.voltvar_net import (
    TRAINED_DIR,
    SurrogateMismatchError,
    shipped_surrogate,
    shipped_surrogate_path,
)

SHIPPED = sorted(p.stem for p in TRAINED_DIR.glob("voltvar-*.pt"))


@pytest.fixture(scope="module")
def ieee123(feeder_dir):
    path = feeder_dir / "ieee123" / "IEEE123Switches.dss"
    return VoltVarProblem.from_feeder(path, 10, VoltVarConfig(monitor=Monitor.LM), seed=3)


@pytest.mark.parametrize("monitor", list(Monitor))
def test_network_ships_with_its_training_record(ieee123, monitor):
    assert f"voltvar-ieee123-{monitor.value}" in SHIPPED
    problem = VoltVarProblem(ieee123.math, ieee123.scenarios, VoltVarConfig(monitor=monitor))
    surrogate = shipped_surrogate(problem)  # checks feeder and settings
    info = surrogate.info
    assert info["n_samples"] >= 1 and info["data_hash"] and len(info["history"]["train"]) >= 1
    assert surrogate.fingerprint["feeder"] == "ieee123"
    assert surrogate.fingerprint["settings"]["monitor"] == monitor.value
    # the embedded network is the trained one: forward pass = predict at random first stages
    f, _ = feature_map(problem)
    phi = np.random.default_rng(0).integers(0, 2, size=(5, f.shape[0])).astype(float)
    e = surrogate.embed(problem)
    net = surrogate.main_network()
    direct = net.forward(np.hstack([phi, np.repeat(e[None], 5, 0)]))[:, 0]
    np.testing.assert_allclose(
        surrogate.predict(phi, e), direct * surrogate.target_std + surrogate.target_mean
    )


@pytest.mark.slow
def test_mismatched_settings_and_monitoring_are_refused(ieee123, monkeypatch, tmp_path):
    other = VoltVarProblem(
        ieee123.math, ieee123.scenarios, VoltVarConfig(monitor=Monitor.LM, max_tap_changes=3)
    )
    with pytest.raises(SurrogateMismatchError, match="max_tap_changes"):
        shipped_surrogate(other)
    monkeypatch.setattr(voltvar_net, "TRAINED_DIR", tmp_path)  # nothing ships there
    assert not shipped_surrogate_path(ieee123).exists()
    with pytest.raises(SurrogateMismatchError, match="no trained network ships"):
        shipped_surrogate(ieee123)
