"""Run-folder output of an AC certificate (:mod:`gridrecourse.evaluation.certificate`).

Writes ``ac_nodes.csv`` (per node: AC voltage of every period, its range, the linear model's
error), ``ac_periods.csv`` (per period) and ``ac_certificate.png`` (AC voltage range per period
against the band, and the model error per period), and a report section.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

from gridrecourse.evaluation.certificate import CertificateRun
from gridrecourse.report.run_folder import RunFolder

NODES_TABLE = "ac_nodes"
PERIODS_TABLE = "ac_periods"
PLOT_FILE = "ac_certificate.png"


def certificate_plot(run: CertificateRun, path: Path, title: str) -> Path:
    """AC voltage range per period vs the band, and the linear model's error per period."""
    periods = run.periods
    cert = run.certificate
    x = np.arange(len(periods))
    fig, (ax, ax2) = plt.subplots(2, 1, figsize=(9, 6), sharex=True)
    ax.fill_between(x, periods["v_min_pu"], periods["v_max_pu"], alpha=0.35, label="AC range")
    ax.plot(x, periods["v_min_pu"], color="tab:blue", lw=1)
    ax.plot(x, periods["v_max_pu"], color="tab:blue", lw=1)
    for level in (cert.v_lower, cert.v_upper):
        ax.axhline(level, color="tab:red", ls="--", lw=1)
    ax.set_ylabel("node voltage (p.u.)")
    ax.set_title(
        f"{title}: {cert.ac_voltage_violations} node-period voltage violations, "
        f"{cert.ac_thermal_violations} thermal"
    )
    ax.legend(loc="best")
    ax2.bar(x, periods["max_model_error_pu"].fillna(0.0), color="tab:gray")
    ax2.set_ylabel("max |V_model − V_AC| (p.u.)")
    ax2.set_xticks(x)
    ax2.set_xticklabels(periods["period"], rotation=90, fontsize=7)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.tmp{path.suffix}")
    fig.savefig(tmp, dpi=120, bbox_inches="tight")
    plt.close(fig)
    tmp.replace(path)
    return path


def write_certificate(folder: RunFolder, run: CertificateRun, title: str) -> dict:
    """Write the certificate's tables, plot and report section; return its JSON keys."""
    folder.write_table(NODES_TABLE, run.nodes)
    folder.write_table(PERIODS_TABLE, run.periods)
    certificate_plot(run, folder.path / PLOT_FILE, title)
    from gridrecourse.report.html import key_value_table

    summary = run.certificate.summary()
    units = {"ac_max_loading_pct": "%", "ac_v_lower": "p.u.", "ac_v_upper": "p.u."}
    shown = {k.removeprefix("ac_"): v for k, v in summary.items()}
    folder.add_report(
        "## AC certificate (OpenDSS, controls off, decision pushed per period)\n\n"
        + key_value_table(shown, {k.removeprefix("ac_"): u for k, u in units.items()})
        + f"\n\nPer-node table: `{NODES_TABLE}.csv`, per period: `{PERIODS_TABLE}.csv`.\n\n"
        + f"![AC certificate]({PLOT_FILE})\n"
    )
    return summary
