"""Plots for run folders (matplotlib, Agg backend: no display needed)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

PHASE_COLORS = {1: "tab:red", 2: "tab:green", 3: "tab:blue"}
PHASE_LABELS = {1: "a", 2: "b", 3: "c"}


def _save(fig, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.tmp{path.suffix}")
    fig.savefig(tmp, dpi=130, bbox_inches="tight")
    plt.close(fig)
    tmp.replace(path)
    return path


def voltage_profile_plot(table: pd.DataFrame, path: Path, title: str) -> Path:
    """Voltage vs distance from the substation, per phase: AC (dots) vs LinDist3Flow (crosses).

    ``table`` needs columns ``distance_km``, ``phase``, ``v_ac_pu``, ``v_lin_pu`` and optionally
    ``v_lin_corrected_pu``.
    """
    fig, ax = plt.subplots(figsize=(9, 5))
    for phase, color in PHASE_COLORS.items():
        sub = table[table["phase"] == phase]
        if sub.empty:
            continue
        label = PHASE_LABELS[phase]
        ax.scatter(
            sub["distance_km"],
            sub["v_ac_pu"],
            s=10,
            color=color,
            alpha=0.7,
            label=f"phase {label}: OpenDSS AC",
        )
        ax.scatter(
            sub["distance_km"],
            sub["v_lin_pu"],
            s=14,
            marker="x",
            color=color,
            alpha=0.6,
            label=f"phase {label}: LinDist3Flow",
        )
        if "v_lin_corrected_pu" in sub:
            ax.scatter(
                sub["distance_km"],
                sub["v_lin_corrected_pu"],
                s=12,
                marker="+",
                color="k",
                alpha=0.25,
            )
    ax.axhline(1.05, color="grey", lw=0.8, ls="--")
    ax.axhline(0.95, color="grey", lw=0.8, ls="--")
    ax.set_xlabel("distance from substation (km)")
    ax.set_ylabel("voltage magnitude (p.u.)")
    ax.set_title(title + "  (black +: loss-corrected)")
    ax.legend(fontsize=7, ncol=3, loc="best")
    ax.grid(alpha=0.3)
    return _save(fig, path)


def opf_plot(
    hours: np.ndarray,
    import_kw: np.ndarray,
    pv_kw: np.ndarray,
    pv_available_kw: np.ndarray,
    price: np.ndarray,
    v_min: np.ndarray,
    v_max: np.ndarray,
    path: Path,
    title: str,
) -> Path:
    """Substation import, PV used/available, price, and the voltage envelope over the day."""
    fig, (ax1, ax2) = plt.subplots(2, 1, figsize=(9, 6.5), sharex=True)
    ax1.plot(hours, import_kw, label="substation import (kW)", color="k")
    ax1.plot(hours, pv_kw, label="PV used (kW)", color="tab:orange")
    ax1.plot(hours, pv_available_kw, label="PV available (kW)", color="tab:orange", ls=":")
    ax1.set_ylabel("kW")
    ax1b = ax1.twinx()
    ax1b.step(hours, price, where="mid", color="tab:purple", alpha=0.6, label="price")
    ax1b.set_ylabel("price (per MWh)")
    ax1.legend(loc="upper left", fontsize=8)
    ax1.set_title(title)
    ax2.fill_between(hours, v_min, v_max, alpha=0.3, label="min–max node voltage")
    ax2.axhline(1.05, color="grey", ls="--", lw=0.8)
    ax2.axhline(0.95, color="grey", ls="--", lw=0.8)
    ax2.set_ylabel("voltage (p.u.)")
    ax2.set_xlabel("hour")
    ax2.legend(fontsize=8)
    for ax in (ax1, ax2):
        ax.grid(alpha=0.3)
    return _save(fig, path)


def feeder_map_plot(feeder, sited_kw: dict[str, float], path: Path, title: str) -> Path | None:
    """The feeder drawn from its bus coordinates with the sited PV (marker area ∝ kW).

    Lines, switches (open ones dashed) and transformers join their buses; roots are squares.
    Returns None (and draws nothing) when fewer than half of the buses have coordinates.
    """
    xy = {b.name: (b.x, b.y) for b in feeder.buses if b.x is not None and b.y is not None}
    if len(xy) < max(2, len(feeder.buses) // 2):
        return None
    fig, ax = plt.subplots(figsize=(8, 6))
    segments = [(ln.bus1, ln.bus2, "-") for ln in feeder.lines]
    segments += [(s.bus1, s.bus2, "-" if s.closed else "--") for s in feeder.switches]
    for t in feeder.transformers:
        buses = [w.bus for w in t.windings]
        segments += [(buses[0], b, "-") for b in buses[1:]]
    for a, b, style in segments:
        if a in xy and b in xy and a != b:
            (x1, y1), (x2, y2) = xy[a], xy[b]
            ax.plot([x1, x2], [y1, y2], style, color="0.6", lw=0.8, zorder=1)
    xs, ys = zip(*xy.values(), strict=True)
    ax.scatter(xs, ys, s=6, color="0.35", zorder=2, label="bus")
    roots = [xy[r.bus] for r in feeder.roots if r.bus in xy]
    if roots:
        rx, ry = zip(*roots, strict=True)
        ax.scatter(rx, ry, s=80, marker="s", color="black", zorder=3, label="substation")
    placed = {b: kw for b, kw in sited_kw.items() if kw > 0 and b in xy}
    if placed:
        top = max(placed.values())
        px, py = zip(*(xy[b] for b in placed), strict=True)
        sizes = [40 + 400 * kw / top for kw in placed.values()]
        ax.scatter(
            px,
            py,
            s=sizes,
            color="orange",
            edgecolor="darkred",
            zorder=4,
            alpha=0.85,
            label="sited PV (area ∝ kW)",
        )
        for b, kw in placed.items():
            ax.annotate(
                f"{b}: {kw:.0f} kW",
                xy[b],
                fontsize=7,
                xytext=(4, 4),
                textcoords="offset points",
                zorder=5,
            )
    ax.set_title(title)
    ax.set_aspect("equal", adjustable="datalim")
    ax.set_xticks([])
    ax.set_yticks([])
    ax.legend(loc="best", fontsize=8)
    return _save(fig, path)
