"""LinDist3Flow network block over (branch-phase, period), lossless or loss-corrected.

For every non-root node n (bus j, phase φ, fed by branch-phase i→j) and period t
(METHODS §1.1; paper A eqs 4a–4c; paper C eqs 45–48; paper B eqs 2–4)::

    P_n − Σ_{m child of n} Re(c S_m) + Σ_dev P_map[n] x_dev     = p_n (+ ℓ^P_n)      (p balance)
    Q_n − Σ_{m child of n} Im(c S_m) + b_n v_n + Σ_dev Q_map[n] x_dev = q_n (+ ℓ^Q_n)  (q balance)
    v_n − ρ_n² v_parent(n) + Σ_m (M_P[n,m] P_m + M_Q[n,m] Q_m)  = 0 (+ Δv_n)          (drop)
    P0 − Σ_{n fed by a root} P_n + Σ_dev Σ_root P_map x_dev     = Σ_root p           (substation)

``p, q`` is the fixed net load (:func:`~gridrecourse.formulation.injections.fixed_net_load`),
``x_dev`` the decision injections (:class:`~gridrecourse.formulation.injections.Injection`).
The loss-corrected variant (METHODS §1.5 for the single-phase case, paper D eq 8f) adds the
series losses ``ℓ = (Z I) I*`` to the balances and ``Δv = |Z I|²`` to the drop, evaluated at a
reference operating point (:meth:`LinDist3Flow.loss_terms`, fixed-point passes): the rows are
unchanged, only their right-hand sides move. On a balanced feeder with decoupled phases this is
paper D's lossy DistFlow (eq 8f: ``v_j = v_i − 2(r P + x Q) + (r² + x²) ℓ`` with the flow
carrying ``r ℓ``, ``ℓ = |I|²`` at the reference point) on each phase; on case33bw it reproduces
OpenDSS's AC voltages to 3e-6 p.u. (``tests/formulation/test_network.py``).

Below a winding between two phases x, y of a non-root bus (``MathFeeder.send_partner``) the
child sums are the balanced-angle shares ``Re(c S)``, ``Im(c S)`` of the winding's flow on x
and on y, so the P and Q balances mix (``LinDist3Flow.flow_pq``, ``flow_qp``); its drop row
uses the pair's sending voltage (:mod:`gridrecourse.physics.lindistflow`).

Two hooks let the tap and switch blocks own part of the drop rows without copying them:

* ``regulated``: branch-phases whose sending voltage ``ρ² v_parent`` is a decision; their drop
  rows carry ``−v_send`` (a column of block ``branch-v_send``) instead, which
  :func:`gridrecourse.formulation.taps.add_tap_selection` defines (paper B eqs 5–7).
* ``gapped``: branch-phases that may be opened; their drop rows carry a free ``branch-v_gap``
  column, which :func:`gridrecourse.formulation.switches.add_switching` bounds by
  ``M (1 − z)`` (paper B eq 15).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

import numpy as np
import scipy.sparse as sp

from gridrecourse.formulation.injections import Injection
from gridrecourse.formulation.periods import by_period, over_periods
from gridrecourse.physics.lindistflow import LinDist3Flow, LossTerms
from gridrecourse.solvers.highs import ConstraintBlock, LinearModel, VariableBlock


class SubstationMode(str, Enum):
    """How the power entering the feeder at its roots appears in the model."""

    #: no substation balance (the objective does not price imports)
    NONE = "none"
    #: one free column ``substation-p`` per period (import positive)
    NET = "net"
    #: nonnegative ``substation-import`` and ``substation-export`` columns per period
    IMPORT_EXPORT = "import_export"


@dataclass(frozen=True, eq=False)
class NetworkRhs:
    """Right-hand sides of the network rows (period-major vectors)."""

    p_balance: np.ndarray
    q_balance: np.ndarray
    voltage_drop: np.ndarray
    substation: np.ndarray | None


@dataclass(frozen=True, eq=False)
class NetworkBlocks:
    """Handle of the LinDist3Flow blocks added by :func:`add_lindist3flow`.

    Attributes
    ----------
    physics : LinDist3Flow
    n_periods : int
    p, q, v : VariableBlock
        ``branch-p``, ``branch-q`` (sending-end flows, p.u.) and ``bus-v`` (squared voltage
        magnitude, p.u.²), E per period.
    substation : tuple of VariableBlock
        ``(substation-p,)`` or ``(substation-import, substation-export)`` or ``()``.
    p_balance, q_balance, voltage_drop : ConstraintBlock
    substation_balance : ConstraintBlock or None
    regulated : ndarray of int
        Branch-phase positions whose sending voltage is the ``sending_voltage`` column.
    sending_voltage : VariableBlock or None
        ``branch-v_send`` (p.u.², ``len(regulated)`` per period).
    gapped : ndarray of int
        Branch-phase positions whose drop row carries the ``drop_gap`` column.
    drop_gap : VariableBlock or None
        ``branch-v_gap`` (p.u.², ``len(gapped)`` per period, free).
    """

    physics: LinDist3Flow
    n_periods: int
    p: VariableBlock
    q: VariableBlock
    v: VariableBlock
    substation: tuple[VariableBlock, ...]
    p_balance: ConstraintBlock
    q_balance: ConstraintBlock
    voltage_drop: ConstraintBlock
    substation_balance: ConstraintBlock | None
    regulated: np.ndarray
    sending_voltage: VariableBlock | None
    gapped: np.ndarray
    drop_gap: VariableBlock | None
    voltage_root: sp.csr_matrix

    @property
    def n_branch_phases(self) -> int:
        """Number of branch-phases E (non-root nodes)."""
        return self.physics.n_branch_phases

    def rhs(
        self,
        p_pu: np.ndarray,
        q_pu: np.ndarray,
        v_root_pu: np.ndarray | None = None,
        losses: LossTerms | None = None,
    ) -> NetworkRhs:
        """Right-hand sides for fixed net loads per node and period.

        Parameters
        ----------
        p_pu, q_pu : ndarray, shape (N, T)
            Fixed net load (load − generation) per node (p.u.).
        v_root_pu : ndarray, shape (n_root,), optional
            Root voltage magnitudes (default: the feeder's).
        losses : LossTerms, optional
            Series losses and |Z I|² per branch-phase and period (loss-corrected variant).
        """
        ph, T = self.physics, self.n_periods
        p, q = np.asarray(p_pu, dtype=float), np.asarray(q_pu, dtype=float)
        if p.shape != (ph.math.n_nodes, T) or q.shape != p.shape:
            raise ValueError(
                f"net load must have shape (nodes, periods) = {(ph.math.n_nodes, T)}, "
                f"got {p.shape} and {q.shape}"
            )
        v_root = ph.math.root_v_pu[ph.root] if v_root_pu is None else np.asarray(v_root_pu)
        p_nr, q_nr = p[ph.nonroot], q[ph.nonroot]
        drop = np.repeat((self.voltage_root @ v_root**2)[:, None], T, axis=1)
        if losses is not None:
            p_nr = p_nr + losses.flow.real
            q_nr = q_nr + losses.flow.imag
            drop = drop + losses.drop
        sub = p[ph.root].sum(axis=0) if self.substation_balance is not None else None
        return NetworkRhs(by_period(p_nr), by_period(q_nr), by_period(drop), sub)

    def set_rhs(self, model: LinearModel, rhs: NetworkRhs) -> None:
        """Write right-hand sides into the built model (keeps its warm start)."""
        model.set_row_bounds(self.p_balance, rhs.p_balance, rhs.p_balance)
        model.set_row_bounds(self.q_balance, rhs.q_balance, rhs.q_balance)
        model.set_row_bounds(self.voltage_drop, rhs.voltage_drop, rhs.voltage_drop)
        if self.substation_balance is not None and rhs.substation is not None:
            model.set_row_bounds(self.substation_balance, rhs.substation, rhs.substation)

    def values(self, solution, block: VariableBlock) -> np.ndarray:
        """A per-branch-phase block of a solution as ``(E, T)``."""
        return solution.value(block).reshape(self.n_periods, -1).T


def _selector(positions: np.ndarray, size: int) -> sp.csr_matrix:
    """``(size, len(positions))`` with a 1 at (positions[k], k)."""
    k = len(positions)
    return sp.csr_matrix((np.ones(k), (positions, np.arange(k))), shape=(size, k))


def add_lindist3flow(
    model: LinearModel,
    physics: LinDist3Flow,
    n_periods: int,
    injections: tuple[Injection, ...] = (),
    *,
    v_bounds: tuple[float, float] = (0.0, np.inf),
    substation: SubstationMode = SubstationMode.NET,
    substation_cost: np.ndarray | float = 0.0,
    regulated: np.ndarray | None = None,
    gapped: np.ndarray | None = None,
) -> NetworkBlocks:
    """Add LinDist3Flow over ``n_periods`` (see the module docstring for the rows).

    Parameters
    ----------
    model : LinearModel
    physics : LinDist3Flow
        Incidence, ratios and ``M_P``, ``M_Q`` of the feeder (built once per feeder).
    n_periods : int
        Number of periods T.
    injections : tuple of Injection
        Decision injections (PV, storage, DGs, tie flows).
    v_bounds : (float, float)
        Bounds of the squared voltage magnitude ``v`` (p.u.²); a hard band is
        ``(v_min², v_max²)`` (or use :func:`gridrecourse.formulation.limits.add_voltage_band`).
    substation : SubstationMode
    substation_cost : float or ndarray, shape (T,)
        Cost per p.u. of ``substation-p`` (NET) or of ``substation-import`` (IMPORT_EXPORT).
    regulated : ndarray of int, optional
        Branch-phase positions (0..E−1) whose sending voltage is a decision (taps).
    gapped : ndarray of int, optional
        Branch-phase positions whose drop row may be released (switches).

    Returns
    -------
    NetworkBlocks
    """
    T, e, n_root = n_periods, physics.n_branch_phases, len(physics.root)
    regulated = np.asarray([] if regulated is None else regulated, dtype=int)
    gapped = np.asarray([] if gapped is None else gapped, dtype=int)
    keep = np.ones(e)
    keep[regulated] = 0.0
    keep_diag = sp.diags(keep)
    voltage_parent = sp.csr_matrix(keep_diag @ physics.voltage_parent)
    voltage_root = sp.csr_matrix(keep_diag @ physics.voltage_root)

    p = model.add_variables("branch-p", e * T, lb=-np.inf)
    q = model.add_variables("branch-q", e * T, lb=-np.inf)
    v = model.add_variables("bus-v", e * T, lb=v_bounds[0], ub=v_bounds[1])
    nonroot, root = physics.nonroot, physics.root
    p_terms = [(p, over_periods(physics.flow_pp, T))]
    q_terms = [(q, over_periods(physics.flow_qq, T)), (v, over_periods(sp.diags(physics.cap_b), T))]
    if physics.coupled:  # windings between two parent phases share S between them
        p_terms.append((q, over_periods(physics.flow_pq, T)))
        q_terms.insert(0, (p, over_periods(physics.flow_qp, T)))
    sub_terms: list = []
    ones_root = sp.csr_matrix(np.ones((1, n_root)))
    for inj in injections:
        p_terms.append((inj.block, over_periods(inj.p_map[nonroot], T)))
        q_terms.append((inj.block, over_periods(inj.q_map[nonroot], T)))
        at_root = ones_root @ inj.p_map[root]
        if at_root.nnz:
            sub_terms.append((inj.block, over_periods(at_root, T)))
    zeros = np.zeros(e * T)
    p_balance = model.add_constraints("branch-p_balance", p_terms, lb=zeros, ub=zeros)
    q_balance = model.add_constraints("branch-q_balance", q_terms, lb=zeros, ub=zeros)

    drop_terms = [
        (p, over_periods(physics.m_p, T)),
        (q, over_periods(physics.m_q, T)),
        (v, over_periods(sp.identity(e, format="csr") - voltage_parent, T)),
    ]
    sending = gap = None
    if len(regulated):
        sending = model.add_variables("branch-v_send", len(regulated) * T, lb=0.0)
        drop_terms.append((sending, over_periods(-_selector(regulated, e), T)))
    if len(gapped):
        gap = model.add_variables("branch-v_gap", len(gapped) * T, lb=-np.inf)
        drop_terms.append((gap, over_periods(_selector(gapped, e), T)))
    drop = model.add_constraints("branch-voltage_drop", drop_terms, lb=zeros, ub=zeros)

    sub_vars: tuple[VariableBlock, ...] = ()
    sub_row = None
    if substation is not SubstationMode.NONE:
        eye_t = sp.identity(T, format="csr")
        if substation is SubstationMode.NET:
            sub_vars = (model.add_variables("substation-p", T, lb=-np.inf, cost=substation_cost),)
            terms = [(sub_vars[0], eye_t)]
        else:
            sub_vars = (
                model.add_variables("substation-import", T, cost=substation_cost),
                model.add_variables("substation-export", T),
            )
            terms = [(sub_vars[0], eye_t), (sub_vars[1], -eye_t)]
        terms.append((p, over_periods(-(ones_root @ physics.root_outflow), T)))
        out_q = sp.csr_matrix(ones_root @ physics.root_outflow_q)
        out_q.data[np.abs(out_q.data) < 1e-12] = 0.0  # x and y both roots: the shares sum to 1
        out_q.eliminate_zeros()
        if out_q.nnz:
            terms.append((q, over_periods(out_q, T)))
        sub_row = model.add_constraints(
            "substation-p_balance", terms + sub_terms, lb=np.zeros(T), ub=np.zeros(T)
        )
    return NetworkBlocks(
        physics=physics,
        n_periods=T,
        p=p,
        q=q,
        v=v,
        substation=sub_vars,
        p_balance=p_balance,
        q_balance=q_balance,
        voltage_drop=drop,
        substation_balance=sub_row,
        regulated=regulated,
        sending_voltage=sending,
        gapped=gapped,
        drop_gap=gap,
        voltage_root=voltage_root,
    )
