"""The PV-siting instance of a benchmark, from its command line (one definition for all).

``add_instance_arguments`` adds ``--feeder``, ``--scenarios``, ``--scenario-seed`` and
``--taps``; ``siting_instance`` builds the :class:`~gridrecourse.problems.siting.PVSitingProblem`
they name (paper C's stratified scenarios, Algorithm 2).
"""

from __future__ import annotations

import argparse

from gridrecourse.problems.siting import (
    PVSitingProblem,
    SitingConfig,
    SitingObjective,
    TapSetting,
)


def add_instance_arguments(
    parser: argparse.ArgumentParser,
    *,
    feeder: str = "ieee123",
    scenarios: int = 1200,
    taps: TapSetting = TapSetting.NEUTRAL,
) -> None:
    """Add the instance options with this benchmark's defaults."""
    parser.add_argument("--feeder", default=feeder)
    parser.add_argument("--scenarios", type=int, default=scenarios, help="scenarios of the problem")
    parser.add_argument("--scenario-seed", type=int, default=0)
    parser.add_argument("--taps", choices=[t.value for t in TapSetting], default=taps.value)


def siting_instance(
    args: argparse.Namespace,
    objective: SitingObjective = SitingObjective.VOLTAGE_DEVIATION,
) -> PVSitingProblem:
    """The siting problem of ``args`` (parsed with :func:`add_instance_arguments`)."""
    return PVSitingProblem.from_feeder(
        args.feeder,
        args.scenarios,
        SitingConfig(objective=objective),
        seed=args.scenario_seed,
        taps=TapSetting(args.taps),
    )
