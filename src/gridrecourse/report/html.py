"""Readable reports: numbers with units and sensible precision, Markdown → self-contained HTML.

Commands add Markdown sections to their run folder (headings, bullet lists, pipe tables,
images); :func:`render_report` turns them into one ``report.html`` with the plots embedded
(base64), so the file can be mailed or opened anywhere.
"""

from __future__ import annotations

import base64
import html
import math
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

#: Units of common summary keys (by exact key or suffix).
UNIT_SUFFIXES: tuple[tuple[str, str], ...] = (
    ("_seconds", "s"),
    ("_pu", "p.u."),
    ("_kw", "kW"),
    ("_kwh", "kWh"),
    ("_mw", "MW"),
    ("_pct", "%"),
    ("_per_mwh", "EUR/MWh"),
)

_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;max-width:1100px;
margin:2em auto;padding:0 1em;color:#1d2731;line-height:1.45}
h1{border-bottom:2px solid #2c6e9b;padding-bottom:.2em}h2{color:#2c6e9b;margin-top:1.6em}
table{border-collapse:collapse;margin:.6em 0 1.2em 0;font-size:.92em}
th,td{border:1px solid #c8d3dc;padding:.25em .6em;text-align:right}
th{background:#eef3f7}td:first-child,th:first-child{text-align:left}
img{max-width:100%;border:1px solid #dde;margin:.5em 0}code{background:#f3f5f7;padding:0 .2em}
.meta{color:#5b6b78;font-size:.9em}
"""


def unit_of(key: str) -> str:
    """The unit of a summary key from its suffix ('' when unknown)."""
    for suffix, unit in UNIT_SUFFIXES:
        if key.endswith(suffix):
            return unit
    return ""


def fmt_number(value: Any, digits: int = 4) -> str:
    """A number with ``digits`` significant digits (integers exact, NaN as ``n/a``)."""
    if isinstance(value, bool) or value is None:
        return "n/a" if value is None else str(value).lower()
    if isinstance(value, int):
        return f"{value:,}".replace(",", " ") if abs(value) >= 10_000 else str(value)
    try:
        x = float(value)
    except (TypeError, ValueError):
        return str(value)
    if math.isnan(x):
        return "n/a"
    if math.isinf(x):
        return "∞" if x > 0 else "−∞"
    if x == 0:
        return "0"
    if abs(x) >= 1e6 or abs(x) < 1e-3:
        return f"{x:.{digits - 1}e}"
    decimals = max(0, digits - 1 - math.floor(math.log10(abs(x))))
    return f"{x:.{decimals}f}"


def fmt_value(value: Any, digits: int = 4) -> str:
    """Numbers via :func:`fmt_number`, short lists inline, anything else as text."""
    if isinstance(value, (list, tuple)):
        if len(value) > 8:
            return f"{len(value)} values"
        return "[" + ", ".join(fmt_value(v, digits) for v in value) + "]"
    if isinstance(value, dict):
        return f"{len(value)} entries"
    try:
        import numpy as np

        if isinstance(value, np.generic):
            value = value.item()
    except ImportError:  # pragma: no cover
        pass
    if isinstance(value, (int, float)) or value is None:
        return fmt_number(value, digits)
    return str(value)


def key_value_table(
    items: Mapping[str, Any], units: Mapping[str, str] | None = None, skip: Iterable[str] = ()
) -> str:
    """A Markdown table ``quantity | value | unit`` (units from ``units`` or :func:`unit_of`)."""
    units = dict(units or {})
    skip = set(skip)
    lines = ["| quantity | value | unit |", "|---|---|---|"]
    for key, value in items.items():
        if key in skip or isinstance(value, dict):
            continue
        unit = units.get(key, unit_of(key))
        lines.append(f"| {key.replace('_', ' ')} | {fmt_value(value)} | {unit} |")
    return "\n".join(lines) + "\n"


def frame_table(frame, digits: int = 4, max_rows: int = 40) -> str:
    """A pandas DataFrame as a Markdown pipe table with rounded numbers (first ``max_rows``)."""
    cols = [str(c) for c in frame.columns]
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for row in frame.head(max_rows).itertuples(index=False):
        lines.append("| " + " | ".join(fmt_value(v, digits) for v in row) + " |")
    if len(frame) > max_rows:
        lines.append(
            f"| … {len(frame) - max_rows} more rows (see the CSV) |" + " |" * (len(cols) - 1)
        )
    return "\n".join(lines) + "\n"


def report_markdown(sections: list[str], provenance: Mapping[str, Any]) -> str:
    """The report's Markdown: the command's sections, then a provenance section."""
    text = "\n".join(sections)
    if provenance:
        text += (
            "\n## Provenance\n\n"
            + "\n".join(f"- {k.replace('_', ' ')}: `{v}`" for k, v in provenance.items())
            + "\n"
        )
    return text


def _inline(text: str, folder: Path | None) -> str:
    """Escape, then render ``code``, **bold** and images (embedded as data URIs)."""

    def image(match: re.Match) -> str:
        alt, src = match.group(1), match.group(2)
        target = (folder / src) if folder is not None else Path(src)
        if target.suffix.lower() == ".png" and target.exists():
            data = base64.b64encode(target.read_bytes()).decode("ascii")
            return f'<img alt="{alt}" src="data:image/png;base64,{data}">'
        return f'<img alt="{alt}" src="{src}">'

    parts = re.split(r"(!\[[^\]]*\]\([^)]*\))", text)
    out = []
    for part in parts:
        m = re.fullmatch(r"!\[([^\]]*)\]\(([^)]*)\)", part)
        if m:
            out.append(image(m))
            continue
        esc = html.escape(part, quote=False)
        esc = re.sub(r"`([^`]+)`", r"<code>\1</code>", esc)
        esc = re.sub(r"\*\*([^*]+)\*\*", r"<strong>\1</strong>", esc)
        out.append(esc)
    return "".join(out)


def markdown_to_html(markdown: str, folder: Path | None = None) -> str:
    """The Markdown subset the reports use (headings, lists, pipe tables, images, paragraphs)."""
    out: list[str] = []
    lines = markdown.splitlines()
    i = 0
    while i < len(lines):
        line = lines[i].rstrip()
        if not line.strip():
            i += 1
            continue
        heading = re.match(r"^(#{1,6})\s+(.*)$", line)
        if heading:
            level = len(heading.group(1))
            out.append(f"<h{level}>{_inline(heading.group(2), folder)}</h{level}>")
            i += 1
            continue
        if line.lstrip().startswith("|"):
            rows = []
            while i < len(lines) and lines[i].lstrip().startswith("|"):
                rows.append(lines[i].strip().strip("|").split("|"))
                i += 1
            body = [r for r in rows if not all(re.fullmatch(r"\s*:?-+:?\s*", c) for c in r)]
            if body:
                head, *rest = body
                out.append("<table><thead><tr>")
                out.extend(f"<th>{_inline(c.strip(), folder)}</th>" for c in head)
                out.append("</tr></thead><tbody>")
                for r in rest:
                    cells = "".join(f"<td>{_inline(c.strip(), folder)}</td>" for c in r)
                    out.append(f"<tr>{cells}</tr>")
                out.append("</tbody></table>")
            continue
        if re.match(r"^\s*[-*]\s+", line):
            out.append("<ul>")
            while i < len(lines) and re.match(r"^\s*[-*]\s+", lines[i]):
                item = re.sub(r"^\s*[-*]\s+", "", lines[i].rstrip())
                out.append(f"<li>{_inline(item, folder)}</li>")
                i += 1
            out.append("</ul>")
            continue
        para = [line]
        i += 1
        while i < len(lines) and lines[i].strip() and not re.match(r"^(#|\||\s*[-*]\s)", lines[i]):
            para.append(lines[i].rstrip())
            i += 1
        out.append(f"<p>{_inline(' '.join(para), folder)}</p>")
    return "\n".join(out)


def render_report(markdown: str, folder: Path | None = None, title: str | None = None) -> str:
    """A self-contained HTML page of the report (plots embedded)."""
    if title is None:
        first = next((ln for ln in markdown.splitlines() if ln.startswith("# ")), "# report")
        title = first[2:].strip()
    body = markdown_to_html(markdown, folder)
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{html.escape(title)}</title><style>{_CSS}</style></head>\n<body>\n{body}\n"
        "</body></html>\n"
    )
