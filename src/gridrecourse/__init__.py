"""gridrecourse: decisions under uncertainty on three-phase unbalanced distribution feeders.

The Python API (names load lazily, so ``import gridrecourse`` and ``gridrecourse --help`` stay
fast)::

    import gridrecourse as gr

    feeder = gr.load_feeder("case33bw")
    problem = gr.PVSitingProblem.from_feeder(feeder, 48, seed=0)   # neutral taps, as the CLI
    result = gr.solve_spar(problem, gr.SPARConfig(max_iterations=40, seed=0))
    report = gr.evaluate(problem, result, feeder=feeder)           # exact + AC certificate

Defaults equal the CLI's (``gridrecourse siting``): the same budget, site limits, taps,
scenarios and method settings.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

#: Public name → module that defines it.
_API: dict[str, str] = {
    # feeders
    "load_feeder": "gridrecourse.network.loading",
    "builtin_names": "gridrecourse.network.loading",
    "Feeder": "gridrecourse.network.components",
    # uncertainty and data
    "ScenarioSet": "gridrecourse.uncertainty.scenarios",
    "ScenarioMethod": "gridrecourse.uncertainty.scenarios",
    "stratified_scenarios": "gridrecourse.uncertainty.scenarios",
    "load_series": "gridrecourse.data.series",
    # problems
    "PVSitingProblem": "gridrecourse.problems.siting",
    "SitingConfig": "gridrecourse.problems.siting",
    "SitingObjective": "gridrecourse.problems.siting",
    "SitingDecision": "gridrecourse.problems.siting",
    "TapSetting": "gridrecourse.problems.siting",
    "SitingBudget": "gridrecourse.problems.siting_budget",
    "StorageExpansionProblem": "gridrecourse.problems.storage_expansion",
    "StorageScenarioProblem": "gridrecourse.problems.storage_scenarios",
    "VoltVarProblem": "gridrecourse.problems.volt_var",
    "OPFConfig": "gridrecourse.problems.opf",
    "build_opf": "gridrecourse.problems.opf",
    "solve_opf": "gridrecourse.problems.opf",
    # methods
    "solve_spar": "gridrecourse.methods.spar",
    "SPARConfig": "gridrecourse.methods.spar",
    "spar_statistical_bounds": "gridrecourse.methods.spar",
    "solve_extensive_form": "gridrecourse.methods.extensive_form",
    "solve_progressive_hedging": "gridrecourse.methods.progressive_hedging",
    "PHConfig": "gridrecourse.methods.progressive_hedging",
    "solve_scenario_addition": "gridrecourse.methods.scenario_addition",
    # evaluation
    "evaluate": "gridrecourse.api",
    "Evaluation": "gridrecourse.api",
    "evaluate_first_stage": "gridrecourse.evaluation.out_of_sample",
    "certify": "gridrecourse.evaluation.certificate",
    "SolverOptions": "gridrecourse.solvers.options",
    "GridRecourseError": "gridrecourse.errors",
}
#: Names whose attribute in the module differs from the public name.
_ALIAS = {"load_feeder": "resolve_feeder_spec"}

__all__ = ["__version__", *sorted(_API)]


def __getattr__(name: str) -> Any:
    """Load a public name on first use (PEP 562)."""
    module = _API.get(name)
    if module is None:
        raise AttributeError(f"module 'gridrecourse' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), _ALIAS.get(name, name))
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_API))
