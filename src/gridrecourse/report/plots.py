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
