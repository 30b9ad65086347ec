"""``gridrecourse.evaluate``: a decision scored exactly on every scenario and certified in AC.

The one evaluation the CLI runs after every method, as a function: the exact expected
recourse over all scenarios (:func:`~gridrecourse.evaluation.out_of_sample.evaluate_first_stage`)
and, given the engineering feeder, the OpenDSS AC certificate
(:func:`~gridrecourse.evaluation.certificate.certify`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from gridrecourse.errors import GridRecourseError


@dataclass(frozen=True)
class Evaluation:
    """A first stage evaluated exactly, with its AC certificate.

    Attributes
    ----------
    objective : float
        Exact expected recourse over all scenarios (objective units).
    n_infeasible : int
        Scenarios whose recourse is infeasible.
    expected_penalty : float
        Expected soft-limit penalty included in ``objective``.
    out_of_sample : OutOfSampleResult
        Per-scenario objectives, duals and times.
    certificate : dict or None
        The AC certificate's summary (``ac_*`` keys), None without a feeder.
    """

    objective: float
    n_infeasible: int
    expected_penalty: float
    out_of_sample: Any
    certificate: dict | None


def evaluate(problem, decision, *, feeder=None, executor=None) -> Evaluation:
    """Evaluate a decision (or a method's result with ``.decision``) on ``problem``.

    Parameters
    ----------
    problem : TwoStageProblem
        The problem (e.g. :class:`~gridrecourse.problems.siting.PVSitingProblem`).
    decision : decision or result
        A first-stage decision, or a result object carrying one in ``.decision``.
    feeder : Feeder or str, optional
        The engineering feeder (object, built-in name or path) for the OpenDSS AC certificate
        of a siting decision; None skips it.
    executor : Executor, optional
        Where the scenarios run (default in-process).

    Raises
    ------
    GridRecourseError
        ``decision`` holds no decision, or an AC certificate is asked for a problem that has
        none.
    """
    from gridrecourse.evaluation.out_of_sample import evaluate_first_stage

    decision = getattr(decision, "decision", decision)
    if decision is None:
        raise GridRecourseError("evaluate: the result holds no decision")
    oos = evaluate_first_stage(problem, decision, executor=executor, desc=None)
    certificate = None
    if feeder is not None:
        from gridrecourse.evaluation.certificate import certify, siting_schedule
        from gridrecourse.network.components import Feeder
        from gridrecourse.network.loading import resolve_feeder_spec
        from gridrecourse.problems.siting import PVSitingProblem

        if not isinstance(problem, PVSitingProblem):
            raise GridRecourseError(
                f"evaluate(feeder=...): the AC certificate is wired for PVSitingProblem, not "
                f"{type(problem).__name__}"
            )
        if not isinstance(feeder, Feeder):
            feeder = resolve_feeder_spec(feeder)
        run = certify(feeder, siting_schedule(problem, decision))
        certificate = run.certificate.summary()
    return Evaluation(
        objective=float(oos.expected_objective),
        n_infeasible=int(oos.n_infeasible),
        expected_penalty=float(oos.expected_penalty),
        out_of_sample=oos,
        certificate=certificate,
    )
