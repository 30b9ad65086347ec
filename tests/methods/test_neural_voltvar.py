"""Neural 2S-VVO (paper B item 3) on the tiny voltvar5 feeder.

References independent of the method: the exact evaluator on the decoded-and-re-encoded
decision, the enumeration of every first stage of the tiny instance (the surrogate MILP must
reach the surrogate's minimum over them), the extensive form (no decision beats it), and
bit-for-bit reruns for the resumable data generation and training.
"""

from __future__ import annotations

import itertools
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from gridrecourse.errors import InfeasibleModelError
from gridrecourse.evaluation.out_of_sample import evaluate_first_stage
from gridrecourse.formulation.relu import BoundMode
from gridrecourse.methods.extensive_form import solve_extensive_form
from gridrecourse.problems.volt_var import Monitor, VoltVarConfig, VoltVarProblem
from gridrecourse.solvers.options import SolverOptions

torch = pytest.importorskip("torch")

from gridrecourse.learning.voltvar_data import (  # noqa: E402
    DataConfig,
    Perturbation,
    VoltVarDataError,
    feature_map,
    generate_data,
    perturbed_targets,
)
from gridrecourse.learning.voltvar_net import (  # noqa: E402
    SurrogateConfig,
    SurrogateConfigError,
    SurrogateMismatchError,
    load_surrogate,
    shipped_surrogate,
    train_surrogate,
)
from gridrecourse.methods.neural_voltvar import solve_neural_voltvar  # noqa: E402

FEEDER = Path(__file__).resolve().parents[1] / "data" / "voltvar5" / "Master.dss"
EXACT = SolverOptions(mip_gap=1e-9, threads=1)
TINY = VoltVarConfig(
    n_periods=2,
    start_hour=18,
    pv_buses=("b4",),
    pv_kva=500.0,
    monitor=Monitor.FM,
    max_tap_changes=2,
    initial_taps=(0.95,),
    max_violation_hours=1,
    max_consecutive_violations=1,
)
DATA = DataConfig(n_samples=12, chunk_size=4, n_kernels=2, kernel_time_limit=30.0)
SMALL = SurrogateConfig(
    gcn=(8, 8),
    conv_channels=4,
    decoder=(16,),
    embedding=4,
    main=(16, 8),
    epochs=40,
    checkpoint_every=10,
    val_fraction=0.25,
)


@pytest.fixture(scope="module")
def tiny() -> VoltVarProblem:
    return VoltVarProblem.from_feeder(FEEDER, 3, TINY, seed=1)


@pytest.fixture(scope="module")
def data(tiny, tmp_path_factory):
    return generate_data(tiny, DATA, tmp_path_factory.mktemp("data"), log=lambda s: None)


@pytest.fixture(scope="module")
def surrogate(tiny, data):
    return train_surrogate(tiny, data, SMALL, log=lambda s: None)[0]


def _first_stages(problem: VoltVarProblem):
    """Every first stage of the tiny instance (5 positions × 2 radial configurations, 2 h)."""
    for pos in itertools.product(range(5), repeat=2):
        for conf in itertools.product(((1, 0), (0, 1)), repeat=2):
            try:
                yield problem.first_stage_vector(np.array(pos)[None, :], np.array(conf).T)
            except InfeasibleModelError:
                continue


def test_step_perturbation_stays_in_the_cheap_neighbourhood(tiny):
    kernel = tiny.first_stage_vector(np.array([[2, 2]]), np.array([[1, 1], [0, 0]]))
    rng = np.random.default_rng(0)
    moved = toggled = 0
    for _ in range(200):
        taps, sws = perturbed_targets(tiny, kernel, 0.5, rng, Perturbation.STEPS)
        d = taps - 2.0
        assert set(np.unique(d)) <= {-1.0, 0.0, 1.0}  # one position at most …
        assert np.all(np.abs(d[:, 1:]) >= np.abs(d[:, :-1]))  # … from one hour on
        flips = sws != np.array([[1, 1], [0, 0]])
        assert set(np.unique(sws)) <= {0.0, 1.0}
        assert all(np.all(np.diff(np.flatnonzero(f)) == 1) for f in flips)  # one window each
        moved += bool(np.any(d))
        toggled += bool(np.any(flips))
    assert 80 < moved < 150 and 100 < toggled < 190  # probabilities 0.5 and 1 − 0.5²
    assert DataConfig().generation_key() == DataConfig(perturbation="redraw").generation_key()
    assert "perturbation" not in DataConfig().generation_key()  # keys of older data unchanged
    assert DataConfig(perturbation="steps").generation_key()["perturbation"] == "steps"
    with pytest.raises(VoltVarDataError, match=r"must be one of \['redraw', 'steps'\]"):
        DataConfig(perturbation="jitter")


def test_data_are_resumable_and_settings_checked(tiny, data, tmp_path):
    part = generate_data(tiny, DATA, tmp_path / "a", log=lambda s: None, stop_after_chunks=1)
    assert len(part.target) == DATA.chunk_size
    resumed = generate_data(tiny, DATA, tmp_path / "a", log=lambda s: None)
    for key in ("x", "features", "scenarios", "recourse", "encoder_input"):
        np.testing.assert_array_equal(getattr(resumed, key), getattr(data, key))
    assert resumed.meta["hash"] == data.meta["hash"]
    with pytest.raises(VoltVarDataError, match="other settings"):
        generate_data(tiny, DataConfig(n_samples=12, chunk_size=4, radius=0.5), tmp_path / "a")
    # labels are the exact evaluator's recourse of each stored first stage
    pool = VoltVarProblem(tiny.math, _pool_scenarios(tiny, 0), TINY)
    ev = evaluate_first_stage(pool, data.x[1], scenarios=np.arange(10) + 10, options=EXACT,
                              desc=None)  # fmt: skip
    np.testing.assert_allclose(ev.objectives, data.recourse[1], rtol=1e-6, atol=1e-6)
    f, _ = feature_map(tiny)
    np.testing.assert_allclose(data.features, (f @ data.x.T).T)
    assert np.all((data.features >= 0) & (data.features <= 1))


def test_pool_kernels_follow_the_worst_served_scenario_and_resume(tiny, tmp_path):
    """Each COVERING kernel after the first is the deterministic VVO on the unused pool
    scenario whose cheapest kernel so far costs most; the stored pool costs are the exact
    evaluator's; a selection cut after its first kernel resumes to the same kernels."""
    from gridrecourse.execution import InProcessExecutor
    from gridrecourse.learning.voltvar_data import (
        _pool_kernels,
        deterministic_vvo,
        instance_problem,
    )

    cfg = DataConfig(n_kernels=3, kernel_selection="covering", kernel_pool=6, mip_gap=1e-9)
    path = tmp_path / "partial.npz"
    with InProcessExecutor() as ex:
        xs = _pool_kernels(tiny, cfg, path, lambda s: None, ex)
        z = dict(np.load(path))
        pool = instance_problem(tiny, cfg, -1, cfg.kernel_pool)
        assert z["scenario"][0] == 0 and len(set(z["scenario"])) == 3
        assert z["cost"].shape == (2, 6)  # the last kernel is not evaluated
        for k in range(2):
            ev = evaluate_first_stage(pool, xs[k], options=EXACT, desc=None)
            np.testing.assert_allclose(z["cost"][k], ev.objectives + tiny.first_stage.cost @ xs[k],
                                       rtol=1e-6, atol=1e-6)  # fmt: skip
            served = z["cost"][: k + 1].min(axis=0)
            served[z["scenario"][: k + 1]] = -np.inf
            assert z["scenario"][k + 1] == np.argmax(served)
            np.testing.assert_array_equal(
                xs[k + 1], deterministic_vvo(pool, int(z["scenario"][k + 1]), cfg)
            )
        np.savez(path, x=z["x"][:1], cost=z["cost"][:0], scenario=z["scenario"][:1])
        np.testing.assert_array_equal(_pool_kernels(tiny, cfg, path, lambda s: None, ex), xs)
    assert DataConfig().generation_key() == DataConfig(kernel_pool=7).generation_key()
    assert cfg.generation_key()["kernel_selection"] == "covering"
    with pytest.raises(VoltVarDataError, match="kernel_selection must be one of"):
        DataConfig(kernel_selection="best")


def test_nested_kernels_grow_their_scenario_set_and_resume(tiny, tmp_path):
    """Each NESTED kernel after the first is the VVO on the previous kernel's scenarios and the
    unused pool scenario that the previous kernel serves worst; every evaluated kernel is
    feasible in its own scenarios (exact evaluator); a cut selection resumes to the same."""
    from gridrecourse.execution import InProcessExecutor
    from gridrecourse.learning.voltvar_data import (
        _pool_kernels,
        deterministic_vvo,
        instance_problem,
    )

    cfg = DataConfig(n_kernels=3, kernel_selection="nested", kernel_pool=6, mip_gap=1e-9, seed=4)
    path = tmp_path / "partial.npz"
    with InProcessExecutor() as ex:
        xs = _pool_kernels(tiny, cfg, path, lambda s: None, ex)
        z = dict(np.load(path))
        pool = instance_problem(tiny, cfg, -1, cfg.kernel_pool)
        chain = [int(s) for s in z["scenario"]]
        assert chain[0] == 0 and len(set(chain)) == 3
        for k in range(2):
            ev = evaluate_first_stage(pool, xs[k], options=EXACT, desc=None)
            np.testing.assert_allclose(z["cost"][k], ev.objectives + tiny.first_stage.cost @ xs[k],
                                       rtol=1e-6, atol=1e-6)  # fmt: skip
            assert np.all(np.isfinite(z["cost"][k][chain[: k + 1]]))
            worst = np.array(z["cost"][k])
            worst[chain[: k + 1]] = -np.inf
            assert chain[k + 1] == np.argmax(worst)
            np.testing.assert_array_equal(
                xs[k + 1], deterministic_vvo(pool, chain[: k + 2], cfg, start=xs[k])
            )
        # On this pool the first kernel (300 $) is infeasible in scenario 4; the second, on
        # scenarios {0, 4}, is feasible in every pool scenario.
        assert np.isinf(z["cost"][0]).any() and np.isfinite(z["cost"][1]).all()
        np.savez(path, x=z["x"][:1], cost=z["cost"][:0], scenario=z["scenario"][:1])
        np.testing.assert_array_equal(_pool_kernels(tiny, cfg, path, lambda s: None, ex), xs)
    assert cfg.generation_key()["kernel_selection"] == "nested"


def test_data_tolerance_reaches_every_milp_and_keeps_old_keys():
    """The data's MILPs run at ``mip_feasibility_tolerance`` (1e-9 by default); data made at
    HiGHS's default 1e-6 before the option keep their key (no such entry)."""
    cfg = DataConfig(kernel_time_limit=7.0)
    assert cfg.generation_key()["mip_feasibility_tolerance"] == 1e-9
    options = cfg.solver_options(cfg.kernel_time_limit)
    assert (options.mip_feasibility_tolerance, options.time_limit, options.threads) == (1e-9, 7, 1)
    assert (
        "mip_feasibility_tolerance"
        not in DataConfig(mip_feasibility_tolerance=1e-6).generation_key()
    )


def _pool_scenarios(problem, chunk):
    from gridrecourse.learning.voltvar_data import instance_problem

    return instance_problem(problem, DATA, chunk, DATA.chunk_size * 10).scenarios


def test_training_resumes_to_the_same_weights(tiny, data, tmp_path):
    ck = tmp_path / "ck.pt"
    cfg = SurrogateConfig(**{**SMALL.__dict__, "epochs": 20})
    train_surrogate(tiny, data, cfg, checkpoint=ck, log=lambda s: None, stop_after_epochs=10)
    resumed, curve = train_surrogate(tiny, data, cfg, checkpoint=ck, log=lambda s: None)
    straight, _ = train_surrogate(tiny, data, cfg, log=lambda s: None)
    assert len(curve.train) == 20
    for a, b in zip(
        resumed.net.state_dict().values(), straight.net.state_dict().values(), strict=True
    ):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_neural_decision_is_feasible_and_evaluated_exactly(tiny, data, surrogate, tmp_path):
    surrogate.save(tmp_path / "net.pt")
    loaded = load_surrogate(tmp_path / "net.pt")
    # the data's kernels travel with the network as MIP start candidates
    assert len(loaded.starts) == len(data.kernels) >= 1
    np.testing.assert_array_equal(loaded.starts, surrogate.starts)
    for cand, kernel in zip(loaded.start_candidates(tiny), data.kernels, strict=True):
        np.testing.assert_array_equal(cand[tiny.primary_columns()],
                                      kernel[tiny.primary_columns()])  # fmt: skip
        assert cand @ tiny.first_stage.cost == pytest.approx(kernel @ tiny.first_stage.cost)
    res = solve_neural_voltvar(tiny, loaded, SolverOptions(mip_gap=0.0, threads=1),
                               eval_options=EXACT)  # fmt: skip
    fs = tiny.first_stage
    a, lo, hi = fs.matrix()
    ax = a @ res.x
    assert np.all(ax >= lo - 1e-7) and np.all(ax <= hi + 1e-7)
    assert np.all(res.x >= fs.lb - 1e-9) and np.all(res.x <= fs.ub + 1e-9)
    assert np.allclose(res.x[fs.integer], np.round(res.x[fs.integer]))
    # exact evaluation = the evaluator on the decoded and re-encoded decision
    d = tiny.decode(res.x)
    again = tiny.first_stage_vector(d.tap_positions, d.switch_closed)
    ref = evaluate_first_stage(tiny, again, options=EXACT, desc=None).expected_objective
    assert res.objective == pytest.approx(ref, abs=1e-6)
    ef = solve_extensive_form(tiny, EXACT)
    assert res.objective >= ef.objective - 1e-6  # no decision beats the EF optimum
    # the MILP is optimal for the surrogate: its value = min over every first stage
    e = loaded.embed(tiny)
    f, _ = feature_map(tiny)
    xs = np.array(list(_first_stages(tiny)))
    # the MILP prices max(network, recourse floor = 0 $): curtailment cannot be negative
    values = xs @ fs.cost + np.maximum(loaded.predict((f @ xs.T).T, e), 0.0)
    assert res.surrogate_objective == pytest.approx(values.min(), abs=1e-5)
    chosen = float(fs.cost @ res.x + max(loaded.predict(f @ res.x, e)[0], 0.0))
    assert res.surrogate_objective == pytest.approx(chosen, abs=1e-6)
    big = solve_neural_voltvar(tiny, loaded, SolverOptions(mip_gap=0.0, threads=1),
                               mode=BoundMode.BIG_M, evaluate=False)  # fmt: skip
    assert big.surrogate_objective == pytest.approx(res.surrogate_objective, abs=1e-5)
    assert res.n_binaries <= big.n_binaries == sum(SMALL.main)
    # LP-tightened bounds are valid over the first stage: the same surrogate optimum
    lp = solve_neural_voltvar(tiny, loaded, SolverOptions(mip_gap=0.0, threads=1),
                              mode=BoundMode.LP, evaluate=False)  # fmt: skip
    assert lp.surrogate_objective == pytest.approx(values.min(), abs=1e-5)
    assert lp.n_binaries <= res.n_binaries and lp.bound_seconds > 0


def test_the_milp_never_prices_recourse_below_its_floor(tiny, surrogate):
    """A network shifted to predict negative curtailment everywhere: the MILP prices 0 $."""
    shifted = replace(surrogate, target_mean=surrogate.target_mean - 1e5)
    e = shifted.embed(tiny)
    f, _ = feature_map(tiny)
    xs = np.array(list(_first_stages(tiny)))
    assert np.all(shifted.predict((f @ xs.T).T, e) < 0)
    res = solve_neural_voltvar(tiny, shifted, SolverOptions(mip_gap=0.0, threads=1),
                               evaluate=False)  # fmt: skip
    assert res.predicted_recourse == pytest.approx(0.0, abs=1e-6)
    assert res.surrogate_objective == pytest.approx((xs @ tiny.first_stage.cost).min(), abs=1e-6)


def test_bad_training_settings_are_refused():
    with pytest.raises(SurrogateConfigError, match="infeasible_penalty must be a finite"):
        SurrogateConfig(infeasible_penalty=-1.0)
    with pytest.raises(SurrogateConfigError, match="epochs and batch_size"):
        SurrogateConfig(epochs=0)


def test_mismatched_network_is_refused(tiny, surrogate):
    config = VoltVarConfig(**{**TINY.__dict__, "max_tap_changes": 1})
    other = VoltVarProblem(tiny.math, tiny.scenarios, config)
    with pytest.raises(SurrogateMismatchError, match="max_tap_changes"):
        solve_neural_voltvar(other, surrogate)
    with pytest.raises(SurrogateMismatchError, match="no trained network ships"):
        shipped_surrogate(tiny)


def test_unresolved_scenarios_leave_their_sample_out_of_training():
    """ieee123 FM data: a recourse MILP hit its time limit with no feasible point and the
    whole generation stopped. Such a scenario is now stored as NaN (no label): its sample is
    never trained on, while an infeasible one (inf) is trained on at the penalty."""
    from types import SimpleNamespace

    from gridrecourse.learning.voltvar_net import _targets

    data = SimpleNamespace(
        recourse=np.array([[1.0, 3.0], [1.0, np.inf], [np.nan, 2.0], [np.nan, np.inf]])
    )
    y, keep = _targets(data, 100.0)
    np.testing.assert_array_equal(keep, [True, True, False, False])
    np.testing.assert_allclose(y[:2], [2.0, 50.5])
    _, keep = _targets(data, 0.0)  # penalty 0: infeasible samples dropped as well
    np.testing.assert_array_equal(keep, [True, False, False, False])


def test_feasibility_rounds_reach_the_cheapest_first_stage_feasible_everywhere(tiny, surrogate):
    """A network that prices every recourse at its floor (0 $) makes the MILP pick the cheapest
    first stage; the feasibility rounds must then end at the cheapest one feasible in every
    scenario, as enumeration says, and report the scenarios they added."""
    flat = replace(surrogate, target_mean=surrogate.target_mean - 1e5)
    xs = np.array(list(_first_stages(tiny)))
    ok = np.array([evaluate_first_stage(tiny, x, options=EXACT, desc=None).n_infeasible == 0
                   for x in xs])  # fmt: skip
    cost = xs @ tiny.first_stage.cost
    assert ok.any() and cost.min() < cost[ok].min()  # the cheapest one is infeasible somewhere
    exact = SolverOptions(mip_gap=0.0, threads=1)
    plain = solve_neural_voltvar(tiny, flat, exact, eval_options=EXACT)
    assert plain.n_infeasible > 0 and plain.rounds == 1 and plain.feasibility_scenarios == ()
    res = solve_neural_voltvar(tiny, flat, exact, eval_options=EXACT, feasibility_rounds=5)
    assert res.n_infeasible == 0 and np.isfinite(res.objective)
    assert res.first_stage_cost == pytest.approx(cost[ok].min(), abs=1e-9)
    assert 2 <= res.rounds <= 6 and len(res.feasibility_scenarios) >= 1
    with pytest.raises(ValueError, match="need the exact evaluation"):
        solve_neural_voltvar(tiny, flat, exact, evaluate=False, feasibility_rounds=1)


def test_recourse_copies_added_in_several_calls_give_the_extensive_form(tiny):
    """``add_second_stage_blocks(prefix=…)`` (the feasibility rounds add scenarios round by
    round): scenario 0, then 1 and 2, on the first-stage model equal the EF of all three."""
    from gridrecourse.problems.base import add_second_stage_blocks

    model, blocks = tiny.first_stage_model()
    p = np.asarray(tiny.probability)
    for k, part in enumerate(([0], [1, 2])):
        add_second_stage_blocks(
            model, tiny.second_stage, p[part], data=tiny.scenario_data(np.array(part)),
            first_stage=blocks, first_stage_spec=tiny.first_stage, prefix=f"part{k}-",
        )  # fmt: skip
    split = model.solve(EXACT)
    ef = solve_extensive_form(tiny, EXACT)
    assert split.objective + tiny.second_stage.objective_offset == pytest.approx(
        ef.objective, abs=1e-6
    )
