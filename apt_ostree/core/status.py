"""The state of a sysroot as plain data, with rpm-ostree's `status --json` key names."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from apt_ostree.core.ostree import Repo
from apt_ostree.core.sysroot import STAGED_LOCK, Deployment, Sysroot
from apt_ostree.errors import RepoError


def deployment_json(repo: Repo, d: Deployment) -> dict[str, Any]:
    try:
        info = repo.commit(d.checksum)
        version, timestamp = info.metadata.get("version"), info.timestamp
    except RepoError:
        version, timestamp = None, 0
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
        "requested-packages": [],
        "requested-local-packages": [],
        "requested-base-removals": [],
        "requested-base-local-replacements": [],
        "packages": [],
        "base-removals": [],
        "base-local-replacements": [],
        "regenerate-initramfs": False,
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
