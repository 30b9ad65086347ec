"""Resolve what a user types as FEEDER: a built-in name, an OpenDSS master, or a JSON file.

Built-in names of pandapower cases (``case33bw``, ``ieee_european_lv``) always work: the data
ships with pandapower. The IEEE OpenDSS test feeders (``ieee13``, ``ieee123``, ...) are looked
up in a feeder folder: ``$GRIDRECOURSE_FEEDER_DIR`` if set, else ``shared/feeders`` beside the
current directory or any of its parents (the layout of this project's test data).
"""

from __future__ import annotations

import os
from pathlib import Path

from gridrecourse.errors import UnknownFeederError
from gridrecourse.network.components import Feeder

FEEDER_DIR_ENV = "GRIDRECOURSE_FEEDER_DIR"
DEFAULT_FEEDER = "ieee_european_lv"

#: Built-in OpenDSS feeders: name -> master path relative to the feeder folder.
OPENDSS_FEEDERS: dict[str, str] = {
    "ieee13": "ieee13/IEEE13Nodeckt.dss",
    "ieee123": "ieee123/IEEE123Master.dss",
    "ieee123-switches": "ieee123/IEEE123Switches.dss",
    "ieee8500": "ieee8500/Master.dss",
    "ieee8500-unbal": "ieee8500/Master-unbal.dss",
    "ieee9500": "ieee9500/Master-bal-initial-config.dss",
    "ieee9500-unbal": "ieee9500/Master-unbal-initial-config.dss",
}
#: Built-in pandapower feeders: name -> pandapower.networks function.
PANDAPOWER_FEEDERS: dict[str, str] = {
    "case33bw": "case33bw",
    "ieee_european_lv": "ieee_european_lv_asymmetric",
}

FeederSpec = str | os.PathLike


def feeder_directory() -> Path | None:
    """The folder holding the IEEE OpenDSS test feeders, or ``None`` if there is none."""
    env = os.environ.get(FEEDER_DIR_ENV)
    if env:
        return Path(env)
    here = Path.cwd().resolve()
    for folder in (here, *here.parents):
        for candidate in (folder / "shared" / "feeders", folder.parent / "shared" / "feeders"):
            if candidate.is_dir():
                return candidate
    return None


def builtin_names() -> list[str]:
    """All built-in feeder names."""
    return sorted([*PANDAPOWER_FEEDERS, *OPENDSS_FEEDERS])


def builtin_master(name: str) -> Path:
    """Master file of a built-in OpenDSS feeder (raises if the feeder folder is missing)."""
    folder = feeder_directory()
    if folder is None:
        raise UnknownFeederError(
            f"built-in feeder {name!r} needs the IEEE feeder folder: set {FEEDER_DIR_ENV} to a "
            "folder with ieee13/, ieee123/, ... or pass the master .dss path directly"
        )
    return folder / OPENDSS_FEEDERS[name]


def resolve_feeder_spec(spec: FeederSpec) -> Feeder:
    """Load a feeder from a built-in name, an OpenDSS master (.dss) or a JSON file.

    Raises
    ------
    UnknownFeederError
        ``spec`` is neither a built-in name nor an existing ``.dss``/``.json`` file; the message
        lists the built-in names.
    """
    text = str(spec)
    key = text.lower()
    if key in PANDAPOWER_FEEDERS:
        from gridrecourse.network.io_pandapower import load_pandapower_case

        return load_pandapower_case(PANDAPOWER_FEEDERS[key])
    if key in OPENDSS_FEEDERS:
        from gridrecourse.network.io_opendss import feeder_from_opendss

        return feeder_from_opendss(builtin_master(key))
    path = Path(text).expanduser()
    if path.suffix.lower() == ".json":
        from gridrecourse.network.io_json import feeder_from_json

        if not path.is_file():
            raise UnknownFeederError(f"feeder JSON file not found: {path}")
        return feeder_from_json(path)
    if path.suffix.lower() == ".dss" or path.is_file():
        from gridrecourse.network.io_opendss import feeder_from_opendss

        return feeder_from_opendss(path)
    raise UnknownFeederError(
        f"unknown feeder {text!r}: expected a built-in name ({', '.join(builtin_names())}), "
        "an OpenDSS master .dss file or a gridrecourse feeder .json file"
    )
