"""The README's accuracy table: LinDist3Flow vs OpenDSS AC on every master, one at a time.

Usage::

    python benchmarks/bench_validation.py                 # every row (big feeders included)
    python benchmarks/bench_validation.py --small         # all but the six big feeders
    python benchmarks/bench_validation.py ieee13 path/to/master.dss

Prints one line per feeder and writes ``benchmarks/results/validation.json``: buses/nodes of
the model, max |ΔV| lossless, loss-corrected (at the operating point's angles, the validation's
correction), loss-corrected at balanced angles (the optimization models' correction), the
same on the primary (nodes with a base of at least 1 kV line-to-line), and wall seconds.
Needs ``GRIDRECOURSE_FEEDER_DIR`` (or ``../shared/feeders``) for the shared masters.
"""

from __future__ import annotations

import argparse
import json
import os
import time
import warnings
from pathlib import Path

import numpy as np

from gridrecourse.evaluation.validation import validate_feeder

FEEDERS = Path(os.environ.get("GRIDRECOURSE_FEEDER_DIR", "../shared/feeders"))
SMALL = [
    *(
        f"ieee4bus/{case}/{case}.DSS"
        for case in ("4Bus-YY-Bal", "4Bus-DY-Bal", "4Bus-YD-Bal", "4Bus-GrdYD-Bal", "4Bus-OYOD-Bal")
    ),
    "ieee4bus/4Bus-OYOD-UnBal/4bus-OYOD-UnBal.dss",
    "ieee13/IEEE13Nodeckt.dss",
    "ieee123/IEEE123Master.dss",
    "ieee123/IEEE123Switches.dss",
    "secondary-test/Master.DSS",
    "case33bw",
    "ieee_european_lv",
]
LARGE = [
    "epri-ckt5/Master_ckt5.dss",
    "epri-ckt24/master_ckt24.dss",
    "ieee8500/Master.dss",
    "ieee8500/Master-unbal.dss",
    "ieee9500/Master-bal-initial-config.dss",
    "ieee9500/Master-unbal-initial-config.dss",
]
PRIMARY_KV_LL = 1.0
OUT = Path(__file__).parent / "results" / "validation.json"


def measure(spec: str) -> dict:
    """One row of the table for a built-in name, a path, or a path under the feeder folder."""
    path = FEEDERS / spec
    target = str(path) if path.exists() else spec
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        run = validate_feeder(target)
    r = run.result
    primary = run.math.kv_base_ln * np.sqrt(3.0) >= PRIMARY_KV_LL
    err = run.table["abs_error_corrected_pu"].to_numpy()
    return {
        "feeder": spec,
        "buses": r.n_buses,
        "nodes": r.n_nodes,
        "compared_nodes": r.n_compared_nodes,
        "lossless_pu": r.max_abs_voltage_error_pu,
        "loss_corrected_pu": r.max_abs_voltage_error_pu_loss_corrected,
        "loss_corrected_nominal_angles_pu": (
            r.max_abs_voltage_error_pu_loss_corrected_nominal_angles
        ),
        "primary_loss_corrected_pu": float(np.nanmax(err[primary])) if primary.any() else None,
        "substation_p_error_pct_loss_corrected": r.substation_p_error_pct_loss_corrected,
        "reductions": list(r.reductions),
        "wall_seconds": time.perf_counter() - t0,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("feeders", nargs="*", help="built-in names or masters (default: all)")
    parser.add_argument("--small", action="store_true", help="only the small feeders")
    args = parser.parse_args()
    specs = args.feeders or (SMALL if args.small else SMALL + LARGE)
    rows = []
    for spec in specs:
        row = measure(spec)
        rows.append(row)
        prim = row["primary_loss_corrected_pu"]
        print(
            f"{spec}: {row['buses']}/{row['nodes']} lossless {row['lossless_pu']:.4f} "
            f"corrected {row['loss_corrected_pu']:.1e} "
            f"(balanced angles {row['loss_corrected_nominal_angles_pu']:.4f}) primary "
            f"{'-' if prim is None else f'{prim:.1e}'} ({row['wall_seconds']:.1f} s)",
            flush=True,
        )
    previous = json.loads(OUT.read_text()) if OUT.exists() else {}
    previous.update({row["feeder"]: row for row in rows})
    OUT.write_text(json.dumps(previous, indent=1) + "\n")


if __name__ == "__main__":
    main()
