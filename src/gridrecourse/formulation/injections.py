"""Node injections: how a device's columns enter the LinDist3Flow balances (METHODS §1.1).

A device block with columns ``x`` (per device, per period) injects ``P_map @ x`` active and
``Q_map @ x`` reactive power (p.u., generation positive) at the nodes. Loads are the fixed
right-hand side (:func:`fixed_net_load`); PV, storage, DGs and tie flows are
:class:`Injection` terms of the balance rows. Capacitors are the ``b·v`` term of the reactive
balance in :class:`~gridrecourse.physics.lindistflow.LinDist3Flow` (constant-admittance).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from gridrecourse.network.math_model import MathFeeder
from gridrecourse.physics.lindistflow import net_injections
from gridrecourse.solvers.highs import VariableBlock


@dataclass(frozen=True, eq=False)
class Injection:
    """Columns of one variable block entering the node balances.

    Attributes
    ----------
    block : VariableBlock
        The device columns, period-major, ``n`` per period.
    p_map, q_map : scipy.sparse.csr_matrix, shape (N, n)
        Active / reactive generation at each node per unit of the column (p.u. of the
        per-phase base per unit of the variable).
    """

    block: VariableBlock
    p_map: sp.csr_matrix
    q_map: sp.csr_matrix

    @classmethod
    def active(
        cls, block: VariableBlock, node_map: sp.spmatrix, tan_phi: float | np.ndarray = 0.0
    ) -> Injection:
        """Active power through a (complex) node map with reactive power ``q = tan φ · p``.

        A complex map (delta-connected devices split onto two phases with ``e^{∓j30°}/√3``
        shares) contributes ``Re(M)`` active and ``Im(M)`` reactive per unit of ``p``.
        """
        m = sp.csr_matrix(node_map)
        re, im = sp.csr_matrix(m.real), sp.csr_matrix(m.imag)
        tan = sp.diags(np.broadcast_to(np.asarray(tan_phi, dtype=float), (m.shape[1],)))
        return cls(block, re, sp.csr_matrix(im + re @ tan))

    @classmethod
    def reactive(cls, block: VariableBlock, node_map: sp.spmatrix) -> Injection:
        """Reactive power through a (complex) node map: ``−Im(M)`` active, ``Re(M)`` reactive."""
        m = sp.csr_matrix(node_map)
        return cls(block, sp.csr_matrix(-m.imag), sp.csr_matrix(m.real))

    @classmethod
    def flow(
        cls,
        block: VariableBlock,
        from_node: np.ndarray,
        to_node: np.ndarray,
        n_nodes: int,
        *,
        reactive: bool,
    ) -> Injection:
        """A branch flow between two nodes outside the tree (a tie): it leaves ``from_node``
        (a load there) and enters ``to_node`` (a generation there), lossless."""
        k = len(from_node)
        cols = np.arange(k)
        m = sp.csr_matrix(
            (np.r_[np.ones(k), -np.ones(k)], (np.r_[to_node, from_node], np.r_[cols, cols])),
            shape=(n_nodes, k),
        )
        zero = sp.csr_matrix((n_nodes, k))
        return cls(block, zero, m) if reactive else cls(block, m, zero)


def fixed_net_load(
    math: MathFeeder,
    load_kw: np.ndarray | None = None,
    load_kvar: np.ndarray | None = None,
    *,
    pv_kw: np.ndarray | None = None,
    pv_kvar: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Net nodal load of everything that is not a decision (p.u., load − generation).

    The one way every problem computes its fixed injections: loads (the feeder's, or given
    per load and column), the feeder's generators and storage at their imported dispatch, and
    its PV systems at ``pv_kw``/``pv_kvar`` (default: their imported output; pass zeros when
    the PV output is a decision of the model, which then enters as an :class:`Injection`).

    Parameters
    ----------
    math : MathFeeder
    load_kw, load_kvar : ndarray, shape (n_loads,) or (n_loads, K)
        Power of each load (kW, kvar).
    pv_kw, pv_kvar : ndarray, shape (n_pv,) or (n_pv, K)
        PV output (kW, kvar; generation positive).

    Returns
    -------
    p_pu, q_pu : ndarray, shape (N,) or (N, K)
    """
    return net_injections(math, load_kw, load_kvar, pv_kw, pv_kvar)
