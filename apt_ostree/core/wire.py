"""Requests, results and errors as JSON: what apt-ostreed's worker receives and sends back.

A dataclass becomes ``{"type": NAME, field: value...}``; tuples become lists and come back as
tuples; only the classes named here cross (anything else is an error, never a guess).
An error becomes ``{"error": CLASS, "message": ..., "hint": ...}`` and comes back as the same
class of apt_ostree.errors.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any

from apt_ostree import errors
from apt_ostree.core import ops


@functools.cache
def types() -> dict[str, type]:
    """The classes that cross (imported when first decoded: apt-ostreed itself only encodes requests)."""
    from apt_ostree.core.apt import Package
    from apt_ostree.core.pkgdb import Change, PackageDiff
    from apt_ostree.core.plan import Plan, PlannedPackage

    return {cls.__name__: cls for cls in (*ops.OPS, ops.Request, ops.Result, ops.NewDeployment, ops.LiveResult,
                                          ops.ImagePull, PackageDiff, Change, Package, Plan, PlannedPackage)}


def encode(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {"type": type(value).__name__,
                **{f.name: encode(getattr(value, f.name)) for f in dataclasses.fields(value)}}
    if isinstance(value, tuple | list):
        return [encode(v) for v in value]
    if value is None or isinstance(value, str | int | float | bool):
        return value
    raise TypeError(f"{type(value).__name__} does not cross the worker's pipe")


def decode(data: Any) -> Any:
    if isinstance(data, dict):
        cls = types().get(str(data.get("type")))
        if cls is None:
            raise ValueError(f"unknown type {data.get('type')!r}")
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: decode(v) for k, v in data.items() if k != "type" and k in names})
    if isinstance(data, list):
        return tuple(decode(v) for v in data)
    return data


def encode_error(e: errors.AptOstreeError) -> dict[str, Any]:
    return {"error": type(e).__name__, "message": e.message, "hint": e.hint}


def error_class(name: str) -> type[errors.AptOstreeError]:
    """The apt_ostree.errors class called ``name`` (AptOstreeError for a name it does not have)."""
    cls = getattr(errors, name, None)
    return cls if isinstance(cls, type) and issubclass(cls, errors.AptOstreeError) else errors.AptOstreeError


def decode_error(name: str, message: str, hint: str | None) -> errors.AptOstreeError:
    cls = error_class(name)
    if cls is errors.UnknownPackage:
        return errors.UnknownPackage("", message, hint)
    if cls is errors.CommandError:
        return errors.CommandError(message, hint)
    return cls(message, hint)
