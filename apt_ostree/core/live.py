"""apply-live: a commit's difference from the running /usr, applied without a reboot.

rpm-ostree's design (../shared/notes/live-initramfs-oci-trixie-fleet.md, section 1): the booted
deployment gets libostree's *transient* unlock (a read-only overlay on /usr, gone at the
reboot); apt_ostree.core.live_apply, in a mount namespace of its own, remounts it read-write and
writes the difference between the running tree (the booted commit, or the last commit applied
live) and the target (by default the pending deployment's). What the running system has is kept
in the repository's refs ``apt-ostree/live-apply`` (the commit /usr now matches) and
``apt-ostree/live-apply-inprogress`` (set while writing: an interruption leaves it), and in a
stamp in /run/ostree/deployment-state/ that says the refs belong to this boot. After a reboot the
plain deployment (which has the change) runs, and the refs are dropped at the next use.

Additions only by default: a package the target changes or removes needs allow_replacement (the
refusal names them). Afterwards: system users (the sysusers.d file apt-ostree writes into every
commit), systemd-tmpfiles for changed tmpfiles.d files, ``systemctl daemon-reload`` when units
changed, and the running services whose unit or program changed (restarted on request).
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import apt_ostree
from apt_ostree.core.ops import ApplyLive, LiveResult, Result
from apt_ostree.core.ostree import Repo
from apt_ostree.core.pkgdb import PackageDiff, commit_packages, diff_packages
from apt_ostree.core.sysroot import Deployment, Sysroot
from apt_ostree.errors import CommandError, RepoError, UsageError
from apt_ostree.progress import Progress
from apt_ostree.run import run

LIVE_REF = "apt-ostree/live-apply"
INPROGRESS_REF = "apt-ostree/live-apply-inprogress"
DEPLOYMENT_STATE = Path("/run/ostree/deployment-state")
STAMP = "apt-ostree-is-live.stamp"
DELAY_ENV = "APT_OSTREE_LIVE_DELAY"  # seconds after each path written (tests interrupt there)
UNIT_DIRS = ("/usr/lib/systemd/system/", "/usr/lib/systemd/user/", "/usr/etc/systemd/")
SYSUSERS_DIR = "/usr/lib/sysusers.d/"
TMPFILES_DIR = "/usr/lib/tmpfiles.d/"
_MERGED = ("/bin/", "/sbin/", "/lib/", "/lib64/")


@dataclass(frozen=True)
class LiveState:
    commit: str | None = None  # the running /usr matches it (rpm-ostree's live-replaced)
    inprogress: str | None = None  # an apply-live towards it was interrupted (live-inprogress)


def _stamp(d: Deployment) -> Path:
    return DEPLOYMENT_STATE / f"{d.checksum}.{d.serial}" / STAMP


def state(repo: Repo, d: Deployment) -> LiveState:
    """The live state of ``d`` (empty unless it is the booted deployment of this boot)."""
    if not d.booted or not _stamp(d).exists():
        return LiveState()
    return LiveState(repo.resolve_ref(LIVE_REF), repo.resolve_ref(INPROGRESS_REF))


def sync_refs(sysroot: Sysroot) -> None:
    """Drop refs an earlier boot left (the stamp in /run is gone: the plain deployment runs)."""
    booted = next((d for d in sysroot.deployments() if d.booted), None)
    if booted is None or _stamp(booted).exists():
        return
    repo = sysroot.repo()
    for ref in (LIVE_REF, INPROGRESS_REF):
        if repo.resolve_ref(ref) is not None:
            repo.set_ref(None, ref, None)


def changed_paths(repo: Repo, a: str, b: str) -> set[str]:
    """The paths below /usr that differ between two commits (``ostree diff``: added, modified, removed)."""
    out = run(["ostree", "diff", f"--repo={repo.path}", a, b], capture=True, what="ostree diff").stdout
    paths = set()
    for line in out.splitlines():
        _kind, _, path = line.partition(" ")
        path = path.strip()
        if path.startswith("/usr/"):
            paths.add(path)
    return paths


def replaced_packages(diff: PackageDiff) -> list[str]:
    """The packages of the running system a diff changes or removes."""
    return sorted({p.name for p in diff.removed} | {c.name for c in (*diff.upgraded, *diff.downgraded)})


def _target(sysroot: Sysroot, op: ApplyLive, booted: Deployment) -> str:
    if op.reset:
        return booted.checksum
    if op.target:
        return sysroot.repo().resolve(op.target)
    pending = sysroot.pending_deployment()
    if pending is None:
        raise UsageError("apply-live: no pending deployment to apply",
                         hint="make one first (apt-ostree install, upgrade, deploy), or give --target=COMMIT")
    return pending.checksum


def apply(sysroot: Sysroot, op: ApplyLive, progress: Progress) -> Result:
    """Apply ``op``'s target to the running system; Result.live says what it did."""
    sysroot.load()
    booted = next((d for d in sysroot.deployments() if d.booted), None)
    if booted is None:
        raise UsageError("apply-live: only on the booted system")
    if booted.unlocked == "hotfix":
        raise UsageError("apply-live: /usr has a hotfix overlay (usroverlay --hotfix); it cannot be applied to live",
                         hint="boot another deployment first (apt-ostree rollback, or a new deployment)")
    sync_refs(sysroot)
    repo = sysroot.repo()
    current = state(repo, booted)
    target = _target(sysroot, op, booted)
    if current.inprogress and current.inprogress != target and not op.reset:
        raise RepoError(f"apply-live: an interrupted apply-live was applying {current.inprogress}, not {target}",
                        hint=f"apt-ostree apply-live --target={current.inprogress} completes it; --reset undoes it")
    source = current.commit or booted.checksum
    if source == target and not current.inprogress:
        return Result(changed=False, checksum=target, previous=source)
    diff = diff_packages(commit_packages(repo, source), commit_packages(repo, target))
    replaced = replaced_packages(diff)
    if replaced and not (op.allow_replacement or op.reset):
        raise UsageError(f"apply-live: the change replaces or removes running packages: {', '.join(replaced)}",
                         hint="--allow-replacement applies it anyway (running programs keep the old files "
                              "until restarted); or reboot into the pending deployment")
    progress.step("Computing the live changes")
    paths = changed_paths(repo, source, target)
    if current.inprogress:  # an interrupted run left /usr anywhere between source and inprogress
        paths |= changed_paths(repo, current.inprogress, target)
    if booted.unlocked == "none":
        progress.step("Unlocking /usr (transient overlay)")
        try:
            run(["ostree", "admin", "unlock", "--transient"], progress=progress, what="ostree admin unlock --transient")
        except CommandError as e:
            raise RepoError(f"apply-live: cannot unlock /usr: {e.message}", hint=e.hint) from None
    with sysroot.locked():
        stamp = _stamp(booted)
        stamp.parent.mkdir(parents=True, exist_ok=True)
        stamp.touch()
        repo.set_ref(None, INPROGRESS_REF, target)
        progress.step(f"Applying {len(paths)} changed paths to the running /usr")
        summary = _write(repo, target, sorted(paths), remount=booted.unlocked in ("none", "transient"),
                         progress=progress)
        repo.set_ref(None, LIVE_REF, None if target == booted.checksum else target)
        repo.set_ref(None, INPROGRESS_REF, None)
        if target == booted.checksum:
            stamp.unlink()
    live = LiveResult(source=source, target=target, diff=diff, files=int(summary["files"]),
                      etc_kept=tuple(summary["etc_kept"]), completed=current.inprogress or "")
    return Result(checksum=target, previous=source, live=_after(live, paths, op.restart_services, progress))


def _write(repo: Repo, target: str, paths: list[str], remount: bool, progress: Progress) -> dict[str, Any]:
    spec = {"repo": str(repo.path), "target": target, "paths": paths, "remount": remount,
            "delay": float(os.environ.get(DELAY_ENV, "0") or 0)}
    here = str(Path(apt_ostree.__file__).resolve().parents[1])
    result = run(["unshare", "--mount", "--propagation", "slave", "/usr/bin/python3", "-m",
                  "apt_ostree.core.live_apply"], env={"PYTHONPATH": here}, capture=True, progress=progress,
                 stdin_text=json.dumps(spec), what="writing the running /usr")
    summary: dict[str, Any] = json.loads(result.stdout)
    return summary


def _after(live: LiveResult, paths: set[str], restart: bool, progress: Progress) -> LiveResult:
    """System users, tmpfiles, units and services after the files changed."""
    if any(p.startswith(SYSUSERS_DIR) for p in paths):
        run(["systemd-sysusers"], progress=progress, what="systemd-sysusers")
    tmpfiles = sorted(p for p in paths if p.startswith(TMPFILES_DIR) and p.endswith(".conf") and os.path.exists(p))
    if tmpfiles:
        done = run(["systemd-tmpfiles", "--create", *tmpfiles], progress=progress, check=False)
        if done.returncode != 0:
            progress.message(f"warning: systemd-tmpfiles --create exited {done.returncode} "
                             f"for {', '.join(os.path.basename(t) for t in tmpfiles)}")
    reload = any(p.startswith(UNIT_DIRS) for p in paths)
    if reload:
        run(["systemctl", "daemon-reload"], progress=progress, what="systemctl daemon-reload")
    services = touched_services(paths)
    restarted: tuple[str, ...] = ()
    if restart and services:
        progress.step(f"Restarting {', '.join(services)}")
        run(["systemctl", "restart", "--", *services], progress=progress, what="systemctl restart")
        restarted = services
    return LiveResult(live.source, live.target, live.diff, live.files, live.etc_kept, reload, services, restarted,
                      live.completed)


def _usr(path: str) -> str:
    """A path as it is below /usr (Debian's merged /usr: /bin, /sbin and /lib are links into it)."""
    return "/usr" + path if path.startswith(_MERGED) else path


def touched_services(paths: set[str]) -> tuple[str, ...]:
    """The running services whose unit file or program is one of ``paths``."""
    listed = run(["systemctl", "list-units", "--type=service", "--state=running", "--plain", "--no-legend",
                  "--no-pager"], capture=True, check=False).stdout
    units = [line.split()[0] for line in listed.splitlines() if line.split()]
    if not units:
        return ()
    shown = run(["systemctl", "show", "--property=Id,FragmentPath,ExecStart", "--", *units], capture=True,
                check=False).stdout
    touched = []
    for block in shown.split("\n\n"):
        props = dict(line.partition("=")[::2] for line in block.splitlines() if "=" in line)
        files = [props.get("FragmentPath", ""), *re.findall(r"path=(\S+)", props.get("ExecStart", ""))]
        if any(f and _usr(f) in paths for f in files):
            touched.append(props.get("Id", ""))
    return tuple(sorted(t for t in touched if t))
