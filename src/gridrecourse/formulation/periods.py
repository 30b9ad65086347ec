"""Time expansion of a per-period block: ``I_T ⊗ M`` (period-major variable order)."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp


def over_periods(matrix: sp.spmatrix | np.ndarray, n_periods: int) -> sp.csr_matrix:
    """Block-diagonal ``I_T ⊗ M``: the same rows in every period.

    Parameters
    ----------
    matrix : sparse or dense, shape (r, c)
        Rows of one period over the columns of one period.
    n_periods : int
        Number of periods T.

    Returns
    -------
    scipy.sparse.csr_matrix, shape (T·r, T·c)
    """
    return sp.kron(sp.identity(n_periods, format="csr"), sp.csr_matrix(matrix), format="csr")


def tile_periods(vector: np.ndarray, n_periods: int) -> np.ndarray:
    """Repeat a per-period vector for every period (period-major), shape (T·n,)."""
    return np.tile(np.asarray(vector, dtype=float), n_periods)


def by_period(matrix_nt: np.ndarray) -> np.ndarray:
    """Flatten an ``(n, T)`` array to the period-major vector ``(T·n,)``."""
    return np.asarray(matrix_nt, dtype=float).T.ravel()
