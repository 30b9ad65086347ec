"""Tiny OpenDSS circuits written to a temporary folder for tests."""

from __future__ import annotations

from pathlib import Path

HEADER = """Clear
New Circuit.tiny basekv=12.47 pu=1.0 phases=3 bus1=src
New Linecode.lc nphases=3 units=km rmatrix=[0.3 | 0.1 0.3 | 0.1 0.1 0.3]
~ xmatrix=[0.6 | 0.2 0.6 | 0.2 0.2 0.6]
"""
FOOTER = """Set voltagebases=[12.47]
Calcvoltagebases
"""


def write_master(folder: Path, body: str, name: str = "master.dss") -> Path:
    """Write ``HEADER + body + FOOTER`` as a master file and return its path."""
    path = folder / name
    path.write_text(HEADER + body + FOOTER)
    return path


RADIAL = """New Line.l1 bus1=src bus2=b1 linecode=lc length=1
New Line.l2 bus1=b1 bus2=b2 linecode=lc length=1
New Load.ld2 bus1=b2 phases=3 kv=12.47 kw=900 kvar=300 model=1
"""

MESHED = RADIAL + "New Line.l3 bus1=b2 bus2=src linecode=lc length=2\n"

ISLANDED = RADIAL + (
    "New Line.l9 bus1=x1 bus2=x2 linecode=lc length=1\n"
    "New Load.lonely bus1=x2 phases=3 kv=12.47 kw=100 kvar=10\n"
)
