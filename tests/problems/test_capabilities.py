"""Problem traits and method requirements (problems.capabilities)."""

from __future__ import annotations

import pytest

from contract_cases import Dispatch, Startup
from gridrecourse.errors import GridRecourseError
from gridrecourse.problems.capabilities import (
    EVALUATOR,
    EXTENSIVE_FORM,
    PROGRESSIVE_HEDGING,
    SPAR,
    MethodRequirements,
    Trait,
    UnsupportedProblemError,
    check_requirements,
    problem_traits,
)
from gridrecourse.problems.siting import SitingObjective
from siting_cases import tiny_problem


def test_traits_are_read_from_the_declarations():
    lp = problem_traits(Dispatch()).traits
    assert Trait.SCENARIO_COSTS in lp and Trait.SCENARIO_COLUMN_BOUNDS in lp
    assert Trait.SEVERAL_LINKING_BLOCKS in lp and Trait.LINKING_DUALS in lp
    assert Trait.INTEGER_RECOURSE not in lp and Trait.SEPARABLE_FIRST_STAGE not in lp
    milp = problem_traits(Startup()).traits
    assert Trait.INTEGER_RECOURSE in milp and Trait.LINKING_DUALS not in milp
    assert Trait.MIXED_INTEGER_QUADRATIC_RECOURSE not in milp
    miqp = problem_traits(Startup(quadratic=True)).traits
    assert Trait.MIXED_INTEGER_QUADRATIC_RECOURSE in miqp
    siting = problem_traits(tiny_problem(SitingObjective.LOSSES)).traits
    assert Trait.SEPARABLE_FIRST_STAGE in siting and Trait.QUADRATIC_RECOURSE in siting
    assert Trait.INTEGER_FIRST_STAGE in siting and Trait.SCENARIO_COSTS not in siting


def test_check_names_method_problem_and_capability():
    with pytest.raises(UnsupportedProblemError) as err:
        check_requirements(SPAR, Startup())
    text = str(err.value)
    assert text.startswith("SPAR cannot solve problem 'startup-toy'")
    assert "integer recourse variables" in text and "SeparableFirstStage" in text
    assert isinstance(err.value, GridRecourseError)
    with pytest.raises(UnsupportedProblemError, match=r"progressive hedging.*integer recourse"):
        check_requirements(PROGRESSIVE_HEDGING, Startup())
    with pytest.raises(UnsupportedProblemError, match=r"exact evaluator.*\(MIQP\)"):
        check_requirements(EVALUATOR, Startup(quadratic=True))
    with pytest.raises(UnsupportedProblemError, match=r"needs .*SeparableFirstStage"):
        check_requirements(SPAR, Dispatch())
    custom = MethodRequirements("my method", requires=Trait.SCENARIO_COSTS)
    with pytest.raises(UnsupportedProblemError, match=r"my method.*scenario-dependent"):
        check_requirements(custom, Startup())


def test_supported_combinations_pass():
    for prob in (Dispatch(), Startup(), Startup(quadratic=True)):
        assert check_requirements(EXTENSIVE_FORM, prob).problem == prob.name
    check_requirements(EVALUATOR, Startup())
    check_requirements(PROGRESSIVE_HEDGING, Dispatch())
    check_requirements(SPAR, tiny_problem())
