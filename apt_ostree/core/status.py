"""The state of a sysroot as plain data, with rpm-ostree's `status --json` key names."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from apt_ostree.core import boot_trial, finalization
from apt_ostree.core import layer_keys as layering
from apt_ostree.core.ostree import Repo
from apt_ostree.core.sysroot import Deployment, Sysroot
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


def _image_json(repo: Repo, d: Deployment, meta: Mapping[str, Any]) -> dict[str, Any]:
    """rpm-ostree's container-image-reference(-digest) of an image-based deployment, and apt-ostree's
    image-derived-packages: what the layers added FROM the bootable image by other tools changed."""
    from apt_ostree.core import image
    from apt_ostree.core.pkgdb import commit_packages, diff_packages

    if d.origin is None or not d.origin.container_image:
        return {}
    commit = str(meta.get(layering.KEY_BASE)) if meta.get(layering.KEY_CLIENTLAYER) else d.checksum
    out: dict[str, Any] = {"container-image-reference": d.origin.container_image}
    try:
        state = image.state_of(repo, commit)
        out["container-image-reference-digest"] = state.digest if state else None
        image_base = repo.commit(commit).metadata.get(image.KEY_BASE)
        if image_base:
            diff = diff_packages(commit_packages(repo, str(image_base)), commit_packages(repo, commit))
            out["image-derived-packages"] = [f"{p.name} {p.version}" for p in diff.added] + \
                [f"{c.name} {c.new}" for c in (*diff.upgraded, *diff.downgraded)]
    except RepoError:
        out["container-image-reference-digest"] = None
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
        "finalization-locked": d.finalization_locked,
        "pinned": d.pinned,
        "unlocked": d.unlocked,
        "regenerate-initramfs": bool(d.origin and d.origin.regenerate_initramfs),
        "initramfs-args": list(d.origin.initramfs_args) if d.origin else [],
        "initramfs-etc": list(d.origin.initramfs_etc) if d.origin else [],
        "index": d.index,
        "kernel-arguments": d.kargs,
        **_layer_json(repo, d, meta),
        **_image_json(repo, d, meta),
    }


def live_json(repo: Repo, d: Deployment) -> dict[str, Any]:
    """rpm-ostree's live-replaced and live-inprogress of the booted deployment (when set), and
    apt-ostree's live-diff: the packages the running system has beyond the deployment's."""
    from apt_ostree.core import live
    from apt_ostree.core.pkgdb import commit_packages, diff_packages

    current = live.state(repo, d)
    out: dict[str, Any] = {}
    if current.inprogress:
        out["live-inprogress"] = current.inprogress
    if current.commit:
        out["live-replaced"] = current.commit
        try:
            diff = diff_packages(commit_packages(repo, d.checksum), commit_packages(repo, current.commit))
        except RepoError:
            return out
        parts = [f"{len(x)} {word}" for x, word in ((diff.added, "added"), (diff.upgraded, "upgraded"),
                                                    (diff.downgraded, "downgraded"), (diff.removed, "removed")) if x]
        out["live-diff"] = ", ".join(parts) or "no package changes"
    return out


def status_json(sysroot: Sysroot) -> dict[str, Any]:
    repo = sysroot.repo()
    deployments = sysroot.deployments()
    start = sysroot.pending_deployment()
    trial = boot_trial.state(sysroot.path)
    return {
        # apt-ostree's boot-failed: the default that GRUB abandoned after its one boot (core/boot_trial.py)
        "deployments": [{**deployment_json(repo, d), **(live_json(repo, d) if d.booted else {}),
                         "boot-failed": d.index == 0 and not d.booted and trial == boot_trial.FAILED}
                        for d in deployments],
        # apt-ostree's: a staged deployment that did not finalize at the last shutdown (core/finalization.py)
        "finalization-failure": finalization.last_failure(sysroot),
        # apt-ostree's key: the deployment the next change builds on when it is not the booted one
        "changes-build-on": start.id if start is not None else None,
        "transaction": None,
        "cached-update": cached_update(sysroot, [d for d in deployments if d.osname == deployments[0].osname])
        if deployments else None,
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


def cached_update(sysroot: Sysroot, deployments: list[Deployment]) -> dict[str, Any] | None:
    """A newer commit of the default deployment's origin already in the repo (after upgrade --check)."""
    default = deployments[0] if deployments else None
    if default is None or default.origin is None:
        return None
    repo = sysroot.repo()
    refspec = default.origin.source
    if default.origin.container_image:
        from apt_ostree.core.imgref import OstreeImageRef, image_ref_name

        head = repo.resolve_ref(image_ref_name(OstreeImageRef.parse(refspec)))
    else:
        head = repo.resolve_ref(refspec)
    base = deployment_json(repo, default).get("base-checksum") or default.checksum
    if head is None or head == base:
        return None
    try:
        info, base_info = repo.commit(head), repo.commit(base)
    except RepoError:
        return None
    if info.timestamp <= base_info.timestamp:
        return None
    return {"osname": default.osname, "checksum": head, "version": info.metadata.get("version"),
            "timestamp": info.timestamp, "origin": refspec}
