"""Ship a trained Volt-VAR surrogate with the package, with its human-readable training record.

    python benchmarks/ship_voltvar_network.py NETWORK.pt DATA_DIR [--train-seconds S]

Copies the network to ``src/gridrecourse/learning/trained/voltvar-<feeder>-<monitor>.pt`` (the
name :func:`~gridrecourse.learning.voltvar_net.shipped_surrogate` looks for) and writes
``voltvar-<feeder>-<monitor>.json`` beside it: feeder, settings fingerprint, data settings and
hash, sample counts, generation time per sample, validation error and the training curve
(every 10th epoch). The network file itself carries the same record (``info``), so the JSON is
for people, not for the code.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil

import numpy as np

from gridrecourse.learning.voltvar_data import load_data
from gridrecourse.learning.voltvar_net import TRAINED_DIR, load_surrogate


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("network")
    ap.add_argument("data")
    ap.add_argument("--train-seconds", type=float)
    args = ap.parse_args()
    surrogate = load_surrogate(args.network)
    data = load_data(args.data)
    fp, info = surrogate.fingerprint, surrogate.info
    if info.get("data_hash") != data.meta["hash"]:
        raise SystemExit(f"{args.network} was not trained on {args.data} (data hash differs)")
    stem = f"voltvar-{fp['feeder']}-{fp['settings']['monitor']}"
    target = TRAINED_DIR / f"{stem}.pt"
    tmp = target.with_name(target.name + ".tmp")
    shutil.copyfile(args.network, tmp)
    os.replace(tmp, target)
    history = info.get("history", {})
    record = {
        "feeder": "ieee123/IEEE123Switches.dss" if fp["feeder"] == "ieee123" else fp["feeder"],
        "monitor": fp["settings"]["monitor"],
        "fingerprint": fp,
        "data": info.get("data"),
        "data_hash": info.get("data_hash"),
        "n_samples": info.get("n_samples"),
        "n_train": info.get("n_train"),
        "n_val": info.get("n_val"),
        "n_infeasible_samples": info.get("n_infeasible_samples"),
        "n_kernels": len(surrogate.starts),
        "epochs": info.get("epochs"),
        "infeasible_penalty": surrogate.config.infeasible_penalty,
        "final_val_mae": info.get("final_val_mae"),
        "target_range": info.get("target_range"),
        "data_seconds_per_sample": float(np.sum(data.seconds) / len(data.target)),
        "train_seconds": args.train_seconds,
        "curve_every_10_epochs": {
            k: [round(float(v), 4) for v in vals[9::10]] for k, vals in history.items()
        },
    }
    side = target.with_suffix(".json")
    side.write_text(json.dumps(record, indent=1) + "\n")
    print(f"shipped {target} and {side}")


if __name__ == "__main__":
    main()
