"""The state of a sysroot as plain data, with rpm-ostree's `status --json` key names."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from apt_ostree.core import layering
from apt_ostree.core.ostree import Repo
from apt_ostree.core.sysroot import STAGED_LOCK, Deployment, Sysroot
from apt_ostree.errors import RepoError


def _layer_json(repo: Repo, d: Deployment, meta: Mapping[str, Any]) -> dict[str, Any]:
    origin = d.origin
    requested = list(origin.requested) if origin else []
    inactive = [str(x) for x in meta.get(layering.KEY_INACTIVE, [])]
    out: dict[str, Any] = {
        "requested-packages": requested,
        "requested-local-packages": [p.name for p in origin.requested_local] if origin else [],
        "requested-base-removals": list(origin.override_remove) if origin else [],
        "requested-base-local-replacements": [p.name for p in origin.override_replace_local] if origin else [],
        "packages": [r for r in requested if r.partition("=")[0] not in inactive],
        "base-removals": [f"{n} {v} {a}" for n, v, a in meta.get(layering.KEY_REMOVED, [])],
        "base-local-replacements": [[n, old, new, a] for n, old, new, a in meta.get(layering.KEY_REPLACED, [])],
        "inactive-requests": inactive,
        "layered-dependencies": [f"{n} {v} {a}" for n, v, a in meta.get(layering.KEY_LAYERED, [])],
    }
    base = meta.get(layering.KEY_BASE)
    if meta.get(layering.KEY_CLIENTLAYER) and base:
        out["base-checksum"] = base
        try:
            info = repo.commit(str(base))
            out["base-version"], out["base-timestamp"] = info.metadata.get("version"), info.timestamp
        except RepoError:
            out["base-version"], out["base-timestamp"] = None, None
    return out


def deployment_json(repo: Repo, d: Deployment) -> dict[str, Any]:
    try:
        info = repo.commit(d.checksum)
        version, timestamp, meta = info.metadata.get("version"), info.timestamp, info.metadata
    except RepoError:
        version, timestamp, meta = None, 0, {}
    return {
        "id": d.id,
        "osname": d.osname,
        "serial": d.serial,
        "checksum": d.checksum,
        "version": version,
        "timestamp": timestamp,
        "origin": d.origin_refspec,
        "booted": d.booted,
        "staged": d.staged,
        "finalization-locked": d.staged and STAGED_LOCK.exists(),
        "pinned": d.pinned,
        "unlocked": "none",
        "index": d.index,
        "kernel-arguments": d.kargs,
        "regenerate-initramfs": False,
        **_layer_json(repo, d, meta),
    }


def status_json(sysroot: Sysroot) -> dict[str, Any]:
    repo = sysroot.repo()
    return {
        "deployments": [deployment_json(repo, d) for d in sysroot.deployments()],
        "transaction": None,
        "cached-update": None,
        "update-driver": None,
        "sysroot": str(Path(sysroot.path)),
    }


def pending(sysroot: Sysroot) -> bool:
    """A deployment other than the booted (or default) one will boot next."""
    deployments = sysroot.deployments()
    if not deployments:
        return False
    if sysroot.is_booted:
        return any(d.staged for d in deployments) or not deployments[0].booted
    return False
