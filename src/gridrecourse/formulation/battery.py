"""Battery (energy storage) block: state of charge with efficiency, energy and power limits.

For battery ``j`` and period ``t`` (length Δt hours; columns period-major, ``J`` per period)::

    SOC_j,t − SOC_j,t−1 − Δt (η^c_j ch_j,t − dis_j,t / η^d_j) = 0,  SOC_j,−1 = σ⁰_j E_j   (7c, 7d)
    σ̲_j E_j ≤ SOC_j,t ≤ σ̄_j E_j                                                          (7e)
    0 ≤ ch_j,t ≤ r^c_j E_j,   0 ≤ dis_j,t ≤ r^d_j E_j                                       (7b)
    ch_j,t ≤ r^c_j Ē_j z_j,t,  dis_j,t ≤ r^d_j Ē_j (1 − z_j,t),  z_j,t ∈ {0, 1}  (optional)

(equation numbers of paper A, METHODS §5; the mode binaries ``z`` (1 = charging) are paper D's
ESS model, METHODS §6). ``SOC`` is the end-of-period state. ``E_j`` is the energy capacity:

* a **variable block** (capacity expansion, paper A eq 19: ``x_j``): the limits are rows
  proportional to the capacity column, and with mode binaries ``Ē_j`` is the capacity's upper
  bound (big-M; it must be finite);
* **fixed numbers** (paper D Table II: ``ē``, ``e̲ = σ̲ ē``, ``p̄ch = r^c ē``, ``p̄dis = r^d ē``,
  η): the limits are column bounds, and only the mode rows (if any) are added.

Units: powers in the model's power unit (p.u. of ``s_base``), energies in power unit × hours.
The dispatch enters the node balances through :meth:`Battery.injections` (charging is a load).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from gridrecourse.formulation.injections import Injection
from gridrecourse.formulation.periods import tile_periods
from gridrecourse.solvers.highs import ConstraintBlock, LinearModel, VariableBlock

__all__ = ["Battery", "BatteryParameters", "add_battery"]


def _per_unit(value: float | np.ndarray, n: int, name: str) -> np.ndarray:
    arr = np.broadcast_to(np.asarray(value, dtype=float), (n,)).copy()
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"battery {name} must be finite, got {arr}")
    return arr


@dataclass(frozen=True, eq=False)
class BatteryParameters:
    """Per-battery constants of :func:`add_battery` (all relative to the energy capacity E).

    Attributes
    ----------
    n_units : int
        Number of batteries J.
    period_hours : float
        Δt (h).
    charge_efficiency, discharge_efficiency : ndarray, shape (J,)
        η^c, η^d in (0, 1] (7c).
    soc_min, soc_max : ndarray, shape (J,)
        σ̲, σ̄: state-of-charge bounds as fractions of E (7e), ``0 ≤ σ̲ ≤ σ̄``.
    charge_rate, discharge_rate : ndarray, shape (J,)
        r^c, r^d: power limits per unit of energy capacity (1/h) (7b).
    initial_soc : ndarray, shape (J,)
        σ⁰: state of charge before the first period as a fraction of E (7d; paper A: 0).
    """

    n_units: int
    period_hours: float
    charge_efficiency: np.ndarray
    discharge_efficiency: np.ndarray
    soc_min: np.ndarray
    soc_max: np.ndarray
    charge_rate: np.ndarray
    discharge_rate: np.ndarray
    initial_soc: np.ndarray

    def __post_init__(self) -> None:
        n = int(self.n_units)
        if n < 0 or n != self.n_units:
            raise ValueError(f"battery n_units must be an integer >= 0, got {self.n_units}")
        if not self.period_hours > 0:
            raise ValueError(f"battery period_hours must be > 0, got {self.period_hours}")
        object.__setattr__(self, "n_units", n)
        for name in (
            "charge_efficiency",
            "discharge_efficiency",
            "soc_min",
            "soc_max",
            "charge_rate",
            "discharge_rate",
            "initial_soc",
        ):
            object.__setattr__(self, name, _per_unit(getattr(self, name), n, name))
        for name in ("charge_efficiency", "discharge_efficiency"):
            eta = getattr(self, name)
            if np.any(eta <= 0) or np.any(eta > 1):
                raise ValueError(f"battery {name} must be in (0, 1], got {eta}")
        if np.any(self.soc_min < 0) or np.any(self.soc_min > self.soc_max):
            raise ValueError(
                f"battery needs 0 <= soc_min <= soc_max, got {self.soc_min}, {self.soc_max}"
            )
        if np.any(self.charge_rate < 0) or np.any(self.discharge_rate < 0):
            raise ValueError("battery charge_rate and discharge_rate must be >= 0")
        if np.any(self.initial_soc < 0):
            raise ValueError(f"battery initial_soc must be >= 0, got {self.initial_soc}")

    @classmethod
    def uniform(
        cls,
        n_units: int,
        period_hours: float,
        *,
        round_trip_efficiency: float = 1.0,
        soc_min: float = 0.0,
        soc_max: float = 1.0,
        c_rate: float = 1.0,
        initial_soc: float = 0.0,
    ) -> BatteryParameters:
        """Identical batteries with ``η^c = η^d = √η_rt`` and one C-rate (paper A, eqs 7b–7e).

        Parameters
        ----------
        round_trip_efficiency : float
            η_rt in (0, 1], split equally into charge and discharge.
        c_rate : float
            Charge and discharge power per unit of energy capacity (1/h).
        """
        eta = float(np.sqrt(round_trip_efficiency))
        return cls(n_units, period_hours, eta, eta, soc_min, soc_max, c_rate, c_rate, initial_soc)

    @classmethod
    def from_ratings(
        cls,
        period_hours: float,
        charge_max: np.ndarray,
        discharge_max: np.ndarray,
        energy_max: np.ndarray,
        energy_min: np.ndarray,
        efficiency: np.ndarray | float,
        *,
        initial_energy: np.ndarray | None = None,
    ) -> tuple[BatteryParameters, np.ndarray]:
        """Parameters and fixed capacity from absolute ratings (paper D Table II).

        Parameters
        ----------
        charge_max, discharge_max : ndarray, shape (J,)
            p̄ch, p̄dis (power unit).
        energy_max, energy_min : ndarray, shape (J,)
            ē, e̲ (power unit × h); ``ē > 0``.
        efficiency : float or ndarray, shape (J,)
            η, applied to charging and to discharging.
        initial_energy : ndarray, shape (J,), optional
            State before the first period (default e̲).

        Returns
        -------
        params : BatteryParameters
        capacity : ndarray, shape (J,)
            ``E = ē``, the ``capacity`` argument of :func:`add_battery`.
        """
        e_max = np.asarray(energy_max, dtype=float).ravel()
        if np.any(e_max <= 0):
            raise ValueError(f"battery energy_max must be > 0, got {e_max}")
        e_min = np.asarray(energy_min, dtype=float).ravel()
        e0 = e_min if initial_energy is None else np.asarray(initial_energy, dtype=float).ravel()
        params = cls(
            len(e_max),
            period_hours,
            efficiency,
            efficiency,
            e_min / e_max,
            np.ones(len(e_max)),
            np.asarray(charge_max, dtype=float) / e_max,
            np.asarray(discharge_max, dtype=float) / e_max,
            e0 / e_max,
        )
        return params, e_max


@dataclass(frozen=True, eq=False)
class Battery:
    """Handle of the blocks added by :func:`add_battery`.

    Attributes
    ----------
    params : BatteryParameters
    n_periods : int
    capacity : VariableBlock or ndarray, shape (J,)
        E: the capacity column block or the fixed capacities.
    charge, discharge : VariableBlock
        ``<name>-charge``, ``<name>-discharge`` (power unit, ≥ 0, J per period).
    soc : VariableBlock
        ``<name>-soc``: end-of-period state of charge (power unit × h).
    mode : VariableBlock or None
        ``<name>-mode``: 1 = charging (paper D), when requested.
    dynamics : ConstraintBlock
        ``<name>-soc_dynamics`` (7c, 7d).
    soc_upper, soc_lower, charge_limit, discharge_limit : ConstraintBlock or None
        ``<name>-soc_max``, ``<name>-soc_min`` (7e) and ``<name>-charge_limit``,
        ``<name>-discharge_limit`` (7b): rows when the capacity is a variable (``soc_min`` only
        when some σ̲ > 0), else None (column bounds).
    charge_mode, discharge_mode : ConstraintBlock or None
        ``<name>-charge_mode``, ``<name>-discharge_mode`` (mode binaries only).
    """

    params: BatteryParameters
    n_periods: int
    capacity: VariableBlock | np.ndarray
    charge: VariableBlock
    discharge: VariableBlock
    soc: VariableBlock
    mode: VariableBlock | None
    dynamics: ConstraintBlock
    soc_upper: ConstraintBlock | None
    soc_lower: ConstraintBlock | None
    charge_limit: ConstraintBlock | None
    discharge_limit: ConstraintBlock | None
    charge_mode: ConstraintBlock | None
    discharge_mode: ConstraintBlock | None

    def injections(
        self, node_map: sp.spmatrix, tan_phi: float | np.ndarray = 0.0
    ) -> tuple[Injection, Injection]:
        """Charging (a load) and discharging (a generation) through a node map (N, J).

        ``tan_phi`` gives the reactive power ``q = tan φ · p`` of each battery (0: unity pf).
        """
        m = sp.csr_matrix(node_map)
        return Injection.active(self.charge, -m, tan_phi), Injection.active(
            self.discharge, m, tan_phi
        )


def add_battery(
    model: LinearModel,
    n_periods: int,
    params: BatteryParameters,
    capacity: VariableBlock | np.ndarray,
    *,
    mode_binaries: bool = False,
    name: str = "bess",
) -> Battery:
    """Add J batteries over ``n_periods`` periods (equations in the module docstring).

    Parameters
    ----------
    model : LinearModel
    n_periods : int
        T.
    params : BatteryParameters
    capacity : VariableBlock or ndarray, shape (J,)
        Energy capacity E (power unit × h): a block of J columns already in ``model``
        (expansion, paper A eqs 7b–7e, 19) or fixed values (paper D Table II).
    mode_binaries : bool
        Add integer ``z`` (1 = charging) so a battery never charges and discharges in the same
        period (paper D); with a capacity block its upper bound is the big-M.
    name : str
        Prefix of the block names.

    Returns
    -------
    Battery

    Raises
    ------
    ValueError
        Capacity of the wrong size or negative; mode binaries over a capacity block without a
        finite upper bound.
    """
    T, J = int(n_periods), params.n_units
    dt = params.period_hours
    variable = isinstance(capacity, VariableBlock)
    if variable:
        if capacity.size != J:
            raise ValueError(
                f"capacity block {capacity.name!r} has {capacity.size} columns, need {J}"
            )
        e_big = model.columns(capacity).ub
    else:
        e_fixed = np.asarray(capacity, dtype=float).ravel()
        if e_fixed.shape != (J,) or not np.all(np.isfinite(e_fixed)) or np.any(e_fixed < 0):
            raise ValueError(f"fixed capacity must be {J} finite values >= 0, got {e_fixed}")
        e_big = e_fixed
    if mode_binaries and not np.all(np.isfinite(e_big)):
        raise ValueError("mode binaries need a finite upper bound on every battery capacity")

    if variable:
        ch = model.add_variables(f"{name}-charge", J * T)
        dis = model.add_variables(f"{name}-discharge", J * T)
        soc = model.add_variables(f"{name}-soc", J * T)
    else:
        ch = model.add_variables(
            f"{name}-charge", J * T, ub=tile_periods(params.charge_rate * e_fixed, T)
        )
        dis = model.add_variables(
            f"{name}-discharge", J * T, ub=tile_periods(params.discharge_rate * e_fixed, T)
        )
        soc = model.add_variables(
            f"{name}-soc",
            J * T,
            lb=tile_periods(params.soc_min * e_fixed, T),
            ub=tile_periods(params.soc_max * e_fixed, T),
        )
    mode = None
    if mode_binaries:
        mode = model.add_variables(f"{name}-mode", J * T, ub=1.0, integer=True)

    # (7c, 7d): SOC_t − SOC_{t−1} − Δt η^c ch_t + Δt/η^d dis_t = [t = 0] σ⁰ E
    eye = sp.identity(J * T, format="csr")
    shift = sp.kron(sp.eye(T, k=-1, format="csr"), sp.identity(J, format="csr"), format="csr")
    terms = [
        (soc, eye - shift),
        (ch, sp.diags(tile_periods(-dt * params.charge_efficiency, T), format="csr")),
        (dis, sp.diags(tile_periods(dt / params.discharge_efficiency, T), format="csr")),
    ]
    first = np.zeros(T)
    first[0] = 1.0
    rhs = np.zeros(J * T)
    if variable and np.any(params.initial_soc > 0):
        start = sp.kron(np.c_[first], sp.diags(-params.initial_soc), format="csr")
        terms.append((capacity, start))
    elif not variable:
        rhs = np.kron(first, params.initial_soc * e_fixed)
    dynamics = model.add_constraints(f"{name}-soc_dynamics", terms, lb=rhs, ub=rhs)

    soc_upper = soc_lower = charge_limit = discharge_limit = None
    if variable:

        def per_period(fraction: np.ndarray) -> sp.csr_matrix:
            """``(J·T, J)``: ``fraction_j`` times the capacity column in every period."""
            return sp.kron(np.ones((T, 1)), sp.diags(fraction), format="csr")

        soc_upper = model.add_constraints(
            f"{name}-soc_max", [(soc, eye), (capacity, per_period(-params.soc_max))], ub=0.0
        )
        if np.any(params.soc_min > 0):
            soc_lower = model.add_constraints(
                f"{name}-soc_min", [(soc, eye), (capacity, per_period(-params.soc_min))], lb=0.0
            )
        charge_limit = model.add_constraints(
            f"{name}-charge_limit",
            [(ch, eye), (capacity, per_period(-params.charge_rate))],
            ub=0.0,
        )
        discharge_limit = model.add_constraints(
            f"{name}-discharge_limit",
            [(dis, eye), (capacity, per_period(-params.discharge_rate))],
            ub=0.0,
        )

    charge_mode = discharge_mode = None
    if mode is not None:
        # ch ≤ r^c Ē z,  dis ≤ r^d Ē (1 − z)
        big_c = tile_periods(params.charge_rate * e_big, T)
        big_d = tile_periods(params.discharge_rate * e_big, T)
        charge_mode = model.add_constraints(
            f"{name}-charge_mode", [(ch, eye), (mode, sp.diags(-big_c, format="csr"))], ub=0.0
        )
        discharge_mode = model.add_constraints(
            f"{name}-discharge_mode",
            [(dis, eye), (mode, sp.diags(big_d, format="csr"))],
            ub=big_d,
        )
    return Battery(
        params=params,
        n_periods=T,
        capacity=capacity if variable else e_fixed,
        charge=ch,
        discharge=dis,
        soc=soc,
        mode=mode,
        dynamics=dynamics,
        soc_upper=soc_upper,
        soc_lower=soc_lower,
        charge_limit=charge_limit,
        discharge_limit=discharge_limit,
        charge_mode=charge_mode,
        discharge_mode=discharge_mode,
    )
