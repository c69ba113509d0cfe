"""Plain data (status JSON, package lists) ↔ GLib variants for the D-Bus API."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from gi.repository import GLib


def to_variant(value: Any) -> GLib.Variant | None:
    """The natural variant of a JSON-like value; None for null (left out of dictionaries)."""
    if value is None:
        return None
    if isinstance(value, bool):
        return GLib.Variant("b", value)
    if isinstance(value, int):
        return GLib.Variant("x", value)
    if isinstance(value, float):
        return GLib.Variant("d", value)
    if isinstance(value, str):
        return GLib.Variant("s", value)
    if isinstance(value, Mapping):
        return GLib.Variant("a{sv}", vardict(value))
    if isinstance(value, list | tuple):
        if all(isinstance(v, str) for v in value):
            return GLib.Variant("as", list(value))
        if all(isinstance(v, list | tuple) and all(isinstance(x, str) for x in v) for v in value):
            return GLib.Variant("aas", [list(v) for v in value])
        return GLib.Variant("av", [v for v in map(to_variant, value) if v is not None])
    raise TypeError(f"no D-Bus type for {type(value).__name__}")


def vardict(data: Mapping[str, Any]) -> dict[str, GLib.Variant]:
    """A dict for an a{sv}: every value wrapped, nulls left out."""
    out = {}
    for key, value in data.items():
        variant = to_variant(value)
        if variant is not None:
            out[key] = variant
    return out


def unpack_options(variant_dict: Mapping[str, Any]) -> dict[str, Any]:
    """An a{sv} argument as plain Python values (PyGObject unpacks nested variants already)."""
    return {str(k): (v.unpack() if isinstance(v, GLib.Variant) else v) for k, v in variant_dict.items()}
