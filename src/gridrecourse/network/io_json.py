"""Lossless JSON files of a :class:`~gridrecourse.network.components.Feeder`.

File layout (UTF-8, strict JSON)::

    {
      "format": "gridrecourse-feeder",
      "version": 1,
      "name": ..., "buses": [...], "roots": [...], "lines": [...], ...   (every Feeder field)
    }

Encoding rules, driven by the dataclass type hints of :mod:`gridrecourse.network.components`
so that every field is written and checked:

* complex matrices (``Line.z_ohm``, ``Line.y_shunt_siemens``) are ``{"real": [[...]],
  "imag": [[...]]}``, square, in engineering units (ohm, siemens);
* enums are their value (``"wye"``, ``"delta"``; load models as integers, read back as
  :class:`LoadModel` members when they are one);
* tuples are arrays (read back as tuples), nested dataclasses are objects;
* non-finite floats (``inf`` ampacities, NaN) are the strings ``"inf"``, ``"-inf"``, ``"nan"``,
  so the file stays standard JSON; ``None`` is ``null``;
* floats are written in Python's shortest round-trip form, so values are bit-exact.

Reading checks the header and every field's presence and type and raises
:class:`~gridrecourse.errors.FeederInputError` naming the file and the field path (for example
``lines[3].z_ohm``); unknown fields are rejected too. Writing is atomic (temporary file in the
same folder, then ``os.replace``).
"""

from __future__ import annotations

import dataclasses
import enum
import json
import math
import os
import tempfile
import types
import typing
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np

from gridrecourse.errors import FeederInputError
from gridrecourse.network.components import Feeder
from gridrecourse.network.topology import check_feeder_elements

FORMAT_KEY = "format"
VERSION_KEY = "version"
FORMAT_NAME = "gridrecourse-feeder"
FORMAT_VERSION = 1
HEADER_KEYS = (FORMAT_KEY, VERSION_KEY)
REAL_KEY = "real"
IMAG_KEY = "imag"
#: Strings standing for the non-finite floats.
NONFINITE: dict[str, float] = {"inf": math.inf, "-inf": -math.inf, "nan": math.nan}


class _FieldError(Exception):
    """A decoding problem at a field path (turned into FeederInputError with the file name)."""

    def __init__(self, path: str, message: str):
        super().__init__(f"{path}: {message}")
        self.path = path
        self.message = message


@cache
def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _is_dataclass_type(tp: Any) -> bool:
    return isinstance(tp, type) and dataclasses.is_dataclass(tp)


def _union_args(tp: Any) -> tuple[Any, ...] | None:
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        return typing.get_args(tp)
    return None


def _join(path: str, name: str) -> str:
    """Field path of attribute ``name`` below ``path`` (``lines[3]`` + ``z_ohm``)."""
    return f"{path}.{name}" if path else name


# -- encoding ------------------------------------------------------------------------------
def _encode_float(value: Any, path: str) -> float | str:
    try:
        x = float(value)
    except (TypeError, ValueError):
        raise _FieldError(path, f"expected a number, got {value!r}") from None
    if math.isnan(x):
        return "nan"
    if math.isinf(x):
        return "inf" if x > 0 else "-inf"
    return x


def _encode_matrix(value: Any, path: str) -> dict[str, list[list[float | str]]]:
    m = np.asarray(value)
    if m.ndim != 2:
        raise _FieldError(path, f"expected a 2-D matrix, got shape {m.shape}")
    m = m.astype(complex)
    return {
        REAL_KEY: [[_encode_float(x, path) for x in row] for row in m.real],
        IMAG_KEY: [[_encode_float(x, path) for x in row] for row in m.imag],
    }


def _encode(value: Any, tp: Any, path: str) -> Any:
    args = _union_args(tp)
    if args is not None:
        if value is None and type(None) in args:
            return None
        (inner,) = [a for a in args if a is not type(None)]
        return _encode(value, inner, path)
    if tp is np.ndarray:
        return _encode_matrix(value, path)
    if _is_dataclass_type(tp):
        return {
            f.name: _encode(getattr(value, f.name), _hints(tp)[f.name], _join(path, f.name))
            for f in dataclasses.fields(tp)
        }
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        return tp(value).value
    if typing.get_origin(tp) is tuple:
        items = typing.get_args(tp)
        if len(items) == 2 and items[1] is Ellipsis:
            return [_encode(v, items[0], f"{path}[{i}]") for i, v in enumerate(value)]
        return [
            _encode(v, t, f"{path}[{i}]") for i, (v, t) in enumerate(zip(value, items, strict=True))
        ]
    if tp is bool:
        return bool(value)
    if tp is int:
        return int(value)
    if tp is float:
        return _encode_float(value, path)
    if tp is str:
        return str(value)
    raise _FieldError(path, f"cannot encode type {tp!r}")


def feeder_to_dict(feeder: Feeder) -> dict[str, Any]:
    """The JSON-ready dictionary of ``feeder`` (header first, then every Feeder field)."""
    body = _encode(feeder, Feeder, "")
    return {FORMAT_KEY: FORMAT_NAME, VERSION_KEY: FORMAT_VERSION, **body}


def feeder_to_json(feeder: Feeder, path: str | os.PathLike[str]) -> Path:
    """Write ``feeder`` to a JSON file, atomically.

    Parameters
    ----------
    feeder : Feeder
        The feeder (all fields are written, in engineering units).
    path : str or PathLike
        Target file; its folder must exist. An existing file is replaced only once the new
        content is completely written.

    Returns
    -------
    Path
        The written file.
    """
    target = Path(path)
    try:
        text = json.dumps(feeder_to_dict(feeder), allow_nan=False, indent=1)
    except _FieldError as exc:
        raise FeederInputError(f"cannot write feeder {feeder.name!r}: {exc}") from None
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.write("\n")
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return target


# -- decoding ------------------------------------------------------------------------------
def _type_name(value: Any) -> str:
    return "null" if value is None else type(value).__name__


def _describe(value: Any) -> str:
    """How a wrong JSON value is shown in an error message."""
    return "null" if value is None else f"{type(value).__name__} {value!r}"


def _decode_float(value: Any, path: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise _FieldError(path, f"expected a number, got {_describe(value)}")
    if isinstance(value, str):
        if value not in NONFINITE:
            raise _FieldError(
                path, f"expected a number or one of {sorted(NONFINITE)}, got {value!r}"
            )
        return NONFINITE[value]
    return float(value)


def _decode_matrix(value: Any, path: str) -> np.ndarray:
    if not isinstance(value, dict) or set(value) != {REAL_KEY, IMAG_KEY}:
        raise _FieldError(path, f"expected a matrix object with keys {REAL_KEY!r} and {IMAG_KEY!r}")
    parts = []
    for key in (REAL_KEY, IMAG_KEY):
        rows = value[key]
        where = f"{path}.{key}"
        if not isinstance(rows, list) or not all(isinstance(r, list) for r in rows):
            raise _FieldError(where, "expected a list of rows")
        n = len(rows)
        if any(len(r) != n for r in rows):
            raise _FieldError(
                where, f"expected a square matrix, got row lengths {[len(r) for r in rows]}"
            )
        parts.append(
            np.array(
                [
                    [_decode_float(x, f"{where}[{i}][{j}]") for j, x in enumerate(r)]
                    for i, r in enumerate(rows)
                ],
                dtype=float,
            ).reshape(n, n)
        )
    if parts[0].shape != parts[1].shape:
        raise _FieldError(path, f"real part {parts[0].shape} and imag part {parts[1].shape} differ")
    return parts[0] + 1j * parts[1]


def _decode_dataclass(value: Any, cls: type, path: str) -> Any:
    if not isinstance(value, dict):
        raise _FieldError(path or "<top>", f"expected an object, got {_type_name(value)}")
    fields = dataclasses.fields(cls)
    names = {f.name for f in fields}
    unknown = sorted(set(value) - names)
    if unknown:
        raise _FieldError(_join(path, unknown[0]), f"unknown field for {cls.__name__}")
    kwargs = {}
    for f in fields:
        where = _join(path, f.name)
        if f.name not in value:
            raise _FieldError(where, f"missing field of {cls.__name__}")
        decoded = _decode(value[f.name], _hints(cls)[f.name], where)
        if isinstance(f.default, enum.Enum) and not isinstance(decoded, enum.Enum):
            # e.g. Load.model: an int field whose values are LoadModel members
            try:
                decoded = type(f.default)(decoded)
            except ValueError:
                pass
        kwargs[f.name] = decoded
    try:
        return cls(**kwargs)
    except (TypeError, ValueError) as exc:
        raise _FieldError(path or "<top>", f"invalid {cls.__name__}: {exc}") from None


def _decode(value: Any, tp: Any, path: str) -> Any:
    args = _union_args(tp)
    if args is not None:
        if value is None and type(None) in args:
            return None
        (inner,) = [a for a in args if a is not type(None)]
        return _decode(value, inner, path)
    if tp is np.ndarray:
        return _decode_matrix(value, path)
    if _is_dataclass_type(tp):
        return _decode_dataclass(value, tp, path)
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        try:
            return tp(value)
        except ValueError:
            allowed = [m.value for m in tp]
            raise _FieldError(path, f"expected one of {allowed}, got {value!r}") from None
    if typing.get_origin(tp) is tuple:
        if not isinstance(value, list):
            raise _FieldError(path, f"expected an array, got {_type_name(value)}")
        items = typing.get_args(tp)
        if len(items) == 2 and items[1] is Ellipsis:
            return tuple(_decode(v, items[0], f"{path}[{i}]") for i, v in enumerate(value))
        if len(value) != len(items):
            raise _FieldError(path, f"expected an array of {len(items)} items, got {len(value)}")
        return tuple(
            _decode(v, t, f"{path}[{i}]") for i, (v, t) in enumerate(zip(value, items, strict=True))
        )
    if tp is bool:
        if not isinstance(value, bool):
            raise _FieldError(path, f"expected true/false, got {_describe(value)}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise _FieldError(path, f"expected an integer, got {_describe(value)}")
        return value
    if tp is float:
        return _decode_float(value, path)
    if tp is str:
        if not isinstance(value, str):
            raise _FieldError(path, f"expected a string, got {_describe(value)}")
        return value
    raise _FieldError(path, f"cannot decode type {tp!r}")


def feeder_from_dict(data: Any, source: str = "<dict>") -> Feeder:
    """Build a feeder from the dictionary of :func:`feeder_to_dict`.

    Raises
    ------
    FeederInputError
        Wrong format/version header, missing or unknown fields, wrong types; the message
        names ``source`` and the field path.
    """
    if not isinstance(data, dict):
        raise FeederInputError(f"{source}: expected a JSON object, got {_type_name(data)}")
    fmt, version = data.get(FORMAT_KEY), data.get(VERSION_KEY)
    if fmt != FORMAT_NAME:
        raise FeederInputError(
            f"{source}: field {FORMAT_KEY!r} is {fmt!r}; expected {FORMAT_NAME!r} "
            "(not a gridrecourse feeder file)"
        )
    if isinstance(version, bool) or version != FORMAT_VERSION:
        raise FeederInputError(
            f"{source}: field {VERSION_KEY!r} is {version!r}; this gridrecourse reads version "
            f"{FORMAT_VERSION}"
        )
    body = {k: v for k, v in data.items() if k not in HEADER_KEYS}
    try:
        feeder = _decode_dataclass(body, Feeder, "")
    except _FieldError as exc:
        raise FeederInputError(f"{source}: field {exc.path}: {exc.message}") from None
    check_feeder_elements(feeder, source)
    return feeder


def feeder_from_json(path: str | os.PathLike[str]) -> Feeder:
    """Read a feeder written by :func:`feeder_to_json`.

    Parameters
    ----------
    path : str or PathLike
        The JSON file.

    Returns
    -------
    Feeder
        Equal, field by field, to the feeder that was written.

    Raises
    ------
    FeederInputError
        Missing file, invalid JSON, wrong format or version, missing/unknown fields or wrong
        types; the message names the file and the field path (e.g. ``lines[3].z_ohm``).
    """
    source = Path(path)
    try:
        text = source.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise FeederInputError(f"feeder JSON file not found: {source}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise FeederInputError(f"cannot read feeder JSON file {source}: {exc}") from None
    try:
        data = json.loads(text, parse_constant=_reject_constant)
    except json.JSONDecodeError as exc:
        raise FeederInputError(
            f"{source}: invalid JSON at line {exc.lineno} column {exc.colno}: {exc.msg}"
        ) from None
    except ValueError as exc:
        raise FeederInputError(f"{source}: {exc}") from None
    return feeder_from_dict(data, str(source))


def _reject_constant(name: str) -> None:
    raise ValueError(
        f"non-standard JSON constant {name}; write non-finite numbers as "
        f"{sorted(NONFINITE)!r} strings"
    )
