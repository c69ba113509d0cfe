"""A transaction's result (apt_ostree.core.ops.Result, as the worker's JSON) as ``a{sv}``.

Typed keys for D-Bus clients (docs/dbus-api.md, "Transaction results"), and ``json``, the whole
result as the worker sent it, which the CLI renders exactly as it renders an in-process result.
Plain dictionaries: apt-ostreed does not import the engine to describe what it did.
"""

from __future__ import annotations

import json
from typing import Any

from gi.repository import GLib


def _pairs(packages: list[dict[str, Any]]) -> list[tuple[str, str]]:
    return [(str(p["name"]), str(p["version"])) for p in packages]


def _changes(changes: list[dict[str, Any]]) -> list[tuple[str, str, str]]:
    return [(str(c["name"]), str(c["old"]), str(c["new"])) for c in changes]


def result_vardict(result: dict[str, Any]) -> dict[str, GLib.Variant]:
    out: dict[str, GLib.Variant] = {
        "json": GLib.Variant("s", json.dumps(result)),
        "changed": GLib.Variant("b", bool(result.get("changed"))),
        "checksum": GLib.Variant("s", str(result.get("checksum") or "")),
        "previous": GLib.Variant("s", str(result.get("previous") or "")),
        "rebooting": GLib.Variant("b", bool(result.get("rebooting"))),
    }
    if result.get("version"):
        out["version"] = GLib.Variant("s", str(result["version"]))
    deployment = result.get("deployment")
    if deployment:
        out["deployment"] = GLib.Variant("s", str(deployment["id"]))
        out["staged"] = GLib.Variant("b", bool(deployment["staged"]))
    diff = result.get("diff")
    if diff:
        out["packages-added"] = GLib.Variant("a(ss)", _pairs(diff["added"]))
        out["packages-removed"] = GLib.Variant("a(ss)", _pairs(diff["removed"]))
        out["packages-upgraded"] = GLib.Variant("a(sss)", _changes(diff["upgraded"]))
        out["packages-downgraded"] = GLib.Variant("a(sss)", _changes(diff["downgraded"]))
    if result.get("moved"):
        out["default-deployment"] = GLib.Variant("s", str(result["moved"]))
    if result.get("finalized"):
        out["finalized-deployment"] = GLib.Variant("s", str(result["finalized"]))
    if result.get("removed"):
        out["removed-deployments"] = GLib.Variant("as", [str(d) for d in result["removed"]])
    image = result.get("image")
    if image:
        out["image-reference"] = GLib.Variant("s", str(image["reference"]))
        out["image-digest"] = GLib.Variant("s", str(image["digest"]))
        out["image-fetched-bytes"] = GLib.Variant("t", int(image["fetched_bytes"]))
    return out
