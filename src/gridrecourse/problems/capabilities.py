"""What a two-stage problem is, and what a method needs (METHODS §2, ARCHITECTURE "One scenario
contract").

A problem's structure is summarized by :class:`ProblemTraits` (flags of :class:`Trait`, read off
its :class:`~gridrecourse.problems.base.SecondStageSpec` and first stage, never from scenario
data); a method states once, as a :class:`MethodRequirements`, which traits it can handle and
which it needs. :func:`check_requirements` compares the two before any model is built and
raises :class:`UnsupportedProblemError`, naming the method, the problem and the capability.

========================  ====================================================================
method                    handles / needs
========================  ====================================================================
extensive form            everything (quadratic recourse by tangent planes, integer recourse
                          as a MILP)
exact evaluator           everything but integer *and* quadratic recourse together (an MIQP)
progressive hedging       continuous recourse (with a continuous first stage its proximal
                          term makes each subproblem a QP, an MIQP with integer recourse)
SPAR                      needs LP/QP recourse (linking duals are its slopes) and a
                          :class:`~gridrecourse.problems.separable.SeparableFirstStage`
========================  ====================================================================
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Flag, auto
from typing import Any

from gridrecourse.errors import GridRecourseError, InfeasibleModelError

__all__ = [
    "EVALUATOR",
    "EXTENSIVE_FORM",
    "PROGRESSIVE_HEDGING",
    "SPAR",
    "MethodRequirements",
    "ProblemTraits",
    "Trait",
    "UnsupportedProblemError",
    "check_requirements",
    "problem_traits",
]


class UnsupportedProblemError(GridRecourseError, TypeError):
    """A method was given a problem whose structure it cannot handle (message names both)."""


class Trait(Flag):
    """Structural features of a two-stage problem."""

    NONE = 0
    #: some first-stage column is integer
    INTEGER_FIRST_STAGE = auto()
    #: some recourse column is integer (each scenario is a MILP; no duals)
    INTEGER_RECOURSE = auto()
    #: some recourse column has a quadratic cost (each scenario is a QP)
    QUADRATIC_RECOURSE = auto()
    #: integer and quadratic recourse together (an MIQP per scenario)
    MIXED_INTEGER_QUADRATIC_RECOURSE = auto()
    #: recourse costs change per scenario (declared ``scenario_costs``)
    SCENARIO_COSTS = auto()
    #: recourse column bounds change per scenario (declared ``scenario_bounds``)
    SCENARIO_COLUMN_BOUNDS = auto()
    #: more than one linking block
    SEVERAL_LINKING_BLOCKS = auto()
    #: the recourse is continuous, so linking-row duals give ``∂Q/∂x``
    LINKING_DUALS = auto()
    #: the problem declares a separable integer first stage (SPAR)
    SEPARABLE_FIRST_STAGE = auto()


#: Human-readable names used in error messages.
_DESCRIPTION = {
    Trait.INTEGER_FIRST_STAGE: "an integer first stage",
    Trait.INTEGER_RECOURSE: "integer recourse variables",
    Trait.QUADRATIC_RECOURSE: "quadratic recourse costs",
    Trait.MIXED_INTEGER_QUADRATIC_RECOURSE: "integer and quadratic recourse together (MIQP)",
    Trait.SCENARIO_COSTS: "scenario-dependent recourse costs",
    Trait.SCENARIO_COLUMN_BOUNDS: "scenario-dependent recourse column bounds",
    Trait.SEVERAL_LINKING_BLOCKS: "several linking blocks",
    Trait.LINKING_DUALS: "continuous (LP/QP) recourse with linking-row duals",
    Trait.SEPARABLE_FIRST_STAGE: "a SeparableFirstStage declaration (separable_first_stage)",
}


def describe(traits: Trait) -> str:
    """Comma-separated descriptions of the single flags in ``traits``."""
    return ", ".join(_DESCRIPTION[t] for t in Trait if t and t in traits and t in _DESCRIPTION)


@dataclass(frozen=True)
class ProblemTraits:
    """The structure of one problem.

    Attributes
    ----------
    problem : str
        Problem name (for messages).
    traits : Trait
        Flags present.
    """

    problem: str
    traits: Trait

    def __contains__(self, trait: Trait) -> bool:
        return trait in self.traits


def problem_traits(problem: Any) -> ProblemTraits:
    """Read the traits of a :class:`~gridrecourse.problems.base.TwoStageProblem`.

    Only the declarations are read (first- and second-stage specs, the separable first-stage
    declaration); no scenario data is built.
    """
    spec = problem.second_stage
    traits = Trait.NONE
    if bool(problem.first_stage.integer.any()):
        traits |= Trait.INTEGER_FIRST_STAGE
    if spec.has_integer:
        traits |= Trait.INTEGER_RECOURSE
    else:
        traits |= Trait.LINKING_DUALS
    if spec.has_quadratic:
        traits |= Trait.QUADRATIC_RECOURSE
    if spec.has_integer and spec.has_quadratic:
        traits |= Trait.MIXED_INTEGER_QUADRATIC_RECOURSE
    if spec.scenario_costs:
        traits |= Trait.SCENARIO_COSTS
    if spec.scenario_bounds:
        traits |= Trait.SCENARIO_COLUMN_BOUNDS
    if len(spec.links) > 1:
        traits |= Trait.SEVERAL_LINKING_BLOCKS
    try:
        declared = getattr(problem, "separable_first_stage", None) is not None
    except InfeasibleModelError:  # declared, but its rows admit no point: SPAR raises it later
        declared = True
    if declared:
        traits |= Trait.SEPARABLE_FIRST_STAGE
    return ProblemTraits(
        problem=str(getattr(problem, "name", type(problem).__name__)), traits=traits
    )


@dataclass(frozen=True)
class MethodRequirements:
    """What a method needs from a problem.

    Attributes
    ----------
    method : str
        Method name (for messages).
    requires : Trait
        Every one of these must be present.
    unsupported : Trait
        None of these may be present.
    """

    method: str
    requires: Trait = Trait.NONE
    unsupported: Trait = Trait.NONE


#: The extensive form handles every structure.
EXTENSIVE_FORM = MethodRequirements("extensive form")
#: The exact evaluator (:class:`~gridrecourse.problems.base.SecondStageModel`): no MIQP.
EVALUATOR = MethodRequirements(
    "exact evaluator", unsupported=Trait.MIXED_INTEGER_QUADRATIC_RECOURSE
)
#: Progressive hedging: continuous recourse.
PROGRESSIVE_HEDGING = MethodRequirements("progressive hedging", unsupported=Trait.INTEGER_RECOURSE)
#: SPAR: slopes from linking duals, on a declared separable integer first stage.
SPAR = MethodRequirements(
    "SPAR",
    requires=Trait.LINKING_DUALS | Trait.SEPARABLE_FIRST_STAGE,
    unsupported=Trait.INTEGER_RECOURSE,
)


def check_requirements(requirements: MethodRequirements, problem: Any) -> ProblemTraits:
    """Raise unless ``problem`` has what ``requirements`` needs; return its traits.

    Raises
    ------
    UnsupportedProblemError
        Names the method, the problem and each missing or unsupported capability.
    """
    traits = problem_traits(problem)
    missing = requirements.requires & ~traits.traits
    extra = requirements.unsupported & traits.traits
    if missing or extra:
        parts = []
        if missing:
            parts.append(f"it needs {describe(missing)}, which the problem lacks")
        if extra:
            parts.append(f"it does not handle {describe(extra)}")
        raise UnsupportedProblemError(
            f"{requirements.method} cannot solve problem {traits.problem!r}: " + "; ".join(parts)
        )
    return traits
