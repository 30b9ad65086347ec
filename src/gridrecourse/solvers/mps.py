"""Free-format MPS writer for a :class:`~gridrecourse.solvers.highs.LinearModel` (MILP/LP).

Written for readers that are stricter than HiGHS, in particular mpi-sppy's MPS reader (coin-or
``mip`` / CBC, then Pyomo), so the file uses only the plain MPS subset:

* row types ``N`` (objective ``obj``), ``E``, ``G``, ``L``; a two-sided row ``L ≤ aᵀx ≤ U``
  with ``L < U`` becomes two rows ``<name>_lo`` (``G L``) and ``<name>_hi`` (``L U``) — no
  ``RANGES`` section; free rows (both sides infinite) are left out;
* integer columns between ``'MARKER' 'INTORG'`` / ``'INTEND'`` markers, every bound written
  explicitly (``LO``/``UP``/``MI``/``PL``/``FX``; some readers take an integer column without
  bounds as binary);
* the objective constant (which Pyomo's conversion drops) as a column ``obj_constant`` fixed at
  1 with that cost;
* names restricted to ``[A-Za-z0-9_]`` (mpi-sppy maps parentheses to underscores and Pyomo reads
  brackets as indices); numbers with 17 significant digits (round trip exact).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import scipy.sparse as sp

from gridrecourse.errors import GridRecourseError
from gridrecourse.solvers.highs import LinearModel

__all__ = ["MPSExportError", "column_names", "write_mps"]

#: Name of the objective row.
OBJECTIVE_ROW = "obj"
#: Name of the fixed column that carries the objective constant.
CONSTANT_COLUMN = "obj_constant"
_UNSAFE = re.compile(r"[^A-Za-z0-9_]")


class MPSExportError(GridRecourseError, ValueError):
    """A model the MPS writer cannot express (quadratic objective, duplicate names)."""


def _safe(name: str) -> str:
    return _UNSAFE.sub("_", name)


def _num(value: float) -> str:
    return f"{float(value):.17g}"


def column_names(model: LinearModel) -> list[str]:
    """``<block>_<k>`` for every column of ``model`` (sanitized), in column order."""
    names: list[str] = []
    for block in model.variables.values():
        base = _safe(block.name)
        names.extend(f"{base}_{k}" for k in range(block.size))
    return names


def _row_names(model: LinearModel) -> list[str]:
    names: list[str] = []
    for block in model.constraints.values():
        base = _safe(block.name)
        names.extend(f"{base}_{k}" for k in range(block.size))
    return names


def write_mps(
    model: LinearModel,
    path: str | Path,
    *,
    name: str | None = None,
    names: Sequence[str] | None = None,
) -> Path:
    """Write ``model`` (with its current costs and bounds) as a free-format MPS file.

    Parameters
    ----------
    model : LinearModel
        A linear model (integer columns allowed, no quadratic objective).
    path : str or Path
    name : str, optional
        The ``NAME`` record (default ``model.name``).
    names : sequence of str, optional
        Column names (default :func:`column_names`).

    Returns
    -------
    Path

    Raises
    ------
    MPSExportError
        A quadratic objective or duplicate/invalid names.
    """
    if model.is_quadratic:
        raise MPSExportError(
            f"model {model.name!r} has a quadratic objective; the MPS export writes MILPs/LPs "
            "(mpi-sppy's MPS reader has no QUADOBJ)"
        )
    cols = model.columns()
    rows = model.rows()
    cnames = list(names) if names is not None else column_names(model)
    if len(cnames) != model.n_cols or len(set(cnames)) != len(cnames):
        raise MPSExportError("column names must be unique, one per column")
    if any(_UNSAFE.search(c) for c in cnames) or CONSTANT_COLUMN in cnames:
        raise MPSExportError(f"column names must match [A-Za-z0-9_]+ and not be {CONSTANT_COLUMN}")
    rnames = _row_names(model)
    a = model.matrix().tocsr()
    a.sum_duplicates()
    lo, hi = rows.lb, rows.ub
    fin_lo, fin_hi = np.isfinite(lo) & (lo > -1e30), np.isfinite(hi) & (hi < 1e30)
    equal = fin_lo & fin_hi & (lo == hi)
    # one output row per (row, side): E rows once, two-sided rows split into _lo / _hi
    out_rows: list[tuple[str, str, int, float]] = []  # (type, name, source row, rhs)
    for r in range(model.n_rows):
        if equal[r]:
            out_rows.append(("E", rnames[r], r, lo[r]))
        elif fin_lo[r] and fin_hi[r]:
            out_rows.append(("G", rnames[r] + "_lo", r, lo[r]))
            out_rows.append(("L", rnames[r] + "_hi", r, hi[r]))
        elif fin_lo[r]:
            out_rows.append(("G", rnames[r], r, lo[r]))
        elif fin_hi[r]:
            out_rows.append(("L", rnames[r], r, hi[r]))
    copies: dict[int, list[str]] = {}
    for _, rname, r, _ in out_rows:
        copies.setdefault(r, []).append(rname)
    lines = [f"NAME {_safe(name or model.name)}", "ROWS", f" N {OBJECTIVE_ROW}"]
    lines += [f" {kind} {rname}" for kind, rname, _, _ in out_rows]
    lines.append("COLUMNS")
    csc = sp.csc_matrix(a)
    integer = cols.integer
    in_marker = False
    marker = 0
    for j in range(model.n_cols):
        if bool(integer[j]) != in_marker:
            kind = "INTORG" if integer[j] else "INTEND"
            lines.append(f" MARKER{marker} 'MARKER' '{kind}'")
            marker += 1
            in_marker = bool(integer[j])
        c = cnames[j]
        if cols.cost[j] != 0.0:
            lines.append(f" {c} {OBJECTIVE_ROW} {_num(cols.cost[j])}")
        start, stop = csc.indptr[j], csc.indptr[j + 1]
        for r, v in zip(csc.indices[start:stop], csc.data[start:stop], strict=True):
            if v == 0.0:
                continue
            lines.extend(f" {c} {rname} {_num(v)}" for rname in copies.get(int(r), ()))
    if in_marker:
        lines.append(f" MARKER{marker} 'MARKER' 'INTEND'")
    constant = float(model.offset)
    if constant != 0.0:
        lines.append(f" {CONSTANT_COLUMN} {OBJECTIVE_ROW} {_num(constant)}")
    lines.append("RHS")
    lines += [f" RHS {rname} {_num(rhs)}" for _, rname, _, rhs in out_rows if rhs != 0.0]
    lines.append("BOUNDS")
    for j in range(model.n_cols):
        c, lb, ub = cnames[j], cols.lb[j], cols.ub[j]
        lb_inf, ub_inf = not (lb > -1e30), not (ub < 1e30)
        if not lb_inf and not ub_inf and lb == ub:
            lines.append(f" FX BND {c} {_num(lb)}")
            continue
        lines.append(f" MI BND {c}" if lb_inf else f" LO BND {c} {_num(lb)}")
        lines.append(f" PL BND {c}" if ub_inf else f" UP BND {c} {_num(ub)}")
    if constant != 0.0:
        lines.append(f" FX BND {CONSTANT_COLUMN} 1")
    lines.append("ENDATA")
    out = Path(path)
    out.write_text("\n".join(lines) + "\n")
    return out
