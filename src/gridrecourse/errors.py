"""Exceptions raised by gridrecourse.

Every error names the culprit (file, element, field) and what was expected, so a user can fix
the input without reading the source.
"""

from __future__ import annotations


class GridRecourseError(Exception):
    """Base class of every error raised on purpose by gridrecourse."""


class FeederInputError(GridRecourseError, ValueError):
    """A feeder description (file, net, JSON) is malformed or cannot be found."""


class UnknownFeederError(FeederInputError):
    """A feeder name is neither a built-in name nor an existing path."""


class TopologyError(GridRecourseError, ValueError):
    """The network topology does not fit what the model requires."""


class MeshedNetworkError(TopologyError):
    """A radial network was required but the closed branches form a loop.

    Attributes
    ----------
    loop_branches : list of str
        Names of the branches (``Class.name``) that form one loop.
    """

    def __init__(self, message: str, loop_branches: list[str]):
        super().__init__(message)
        self.loop_branches = loop_branches


class IslandedBusError(TopologyError):
    """Some buses have no path to any source (root) bus.

    Attributes
    ----------
    buses : list of str
        Names of the unreachable buses.
    """

    def __init__(self, message: str, buses: list[str]):
        super().__init__(message)
        self.buses = buses


class InvalidSeriesError(GridRecourseError, ValueError):
    """A load/PV/price series has NaN, infinite, negative or otherwise invalid values."""


class SolverError(GridRecourseError, RuntimeError):
    """The solver did not return an optimal solution."""


class InfeasibleModelError(SolverError):
    """The model (or a scenario's second stage) is infeasible."""


class SolverTimeLimitError(SolverError):
    """The solver hit its time limit without an acceptable solution.

    Attributes
    ----------
    dual_bound : float
        The MIP dual bound reached (objective units; NaN when unknown): still a valid lower
        bound of a minimization when no incumbent was found.
    """

    def __init__(self, message: str, dual_bound: float = float("nan")) -> None:
        super().__init__(message)
        self.dual_bound = float(dual_bound)
