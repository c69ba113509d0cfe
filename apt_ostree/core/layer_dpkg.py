"""dpkg for layering: APT's package manager runs the real dpkg, through the wrapper that puts it in the
layering sandbox, with its status on a pipe (progress) and its output in a log (errors name the
failing package and show the log's tail)."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import apt_pkg

from apt_ostree.errors import LayeringError
from apt_ostree.progress import Progress


def run_dpkg(pm: Any, cache: Path, dpkg_wrapper: Path, log: Path, progress: Progress) -> None:
    """Install what ``pm`` (an apt_pkg.PackageManager with its archives fetched) plans, in APT's
    order; ``cache`` is APT's cache directory. LayeringError names the failing package."""
    apt_pkg.config.set("Dir::Bin::dpkg", str(dpkg_wrapper))
    apt_pkg.config.set("DPkg::Options::", "--force-confdef")
    apt_pkg.config.set("DPkg::Options::", "--force-confold")
    # .deb paths on the command line (mapped into the sandbox), not a symlink dir in the host's /tmp
    apt_pkg.config.set("DPkg::Install::Recursive", "false")
    apt_pkg.config.set("DPkg::Install::Recursive::Force", "true")
    # no pty: APT would start dpkg in a session of its own, out of reach of Ctrl-C and of the
    # daemon's cancel (SIGINT to our process group); dpkg's output goes to the log anyway
    apt_pkg.config.set("DPkg::Use-Pty", "false")
    # APT deletes its binary caches after running dpkg (the host's status changed, it assumes);
    # ours describe the base, which did not change: keep them for the next resolution.
    kept = []
    for name in ("pkgcache.bin", "srcpkgcache.bin"):
        path, keep = cache / name, cache / f"{name}.keep"
        if path.exists():
            keep.unlink(missing_ok=True)
            os.link(path, keep)
            kept.append((path, keep))
    read_fd, write_fd = os.pipe()
    reader = threading.Thread(target=_status_reader, args=(read_fd, progress), daemon=True)
    reader.start()
    try:
        with _stdout_to(log):
            result = pm.do_install(write_fd)  # type: ignore[attr-defined]
    except apt_pkg.Error:
        result = pm.RESULT_FAILED
    finally:
        os.close(write_fd)
        reader.join(timeout=10)
        for path, keep in kept:
            if path.exists():
                keep.unlink()
            else:
                keep.rename(path)
    if result != pm.RESULT_COMPLETED:
        raise _dpkg_failure(log)


def _dpkg_failure(log: Path) -> LayeringError:
    text = log.read_text(errors="replace") if log.exists() else ""
    lines = text.splitlines()
    for i, ln in enumerate(lines):
        if ln.startswith(("dpkg: error processing package", "dpkg: error processing archive")) \
                or "subprocess returned error exit status" in ln:
            what = ln.removeprefix("dpkg: ").strip()
            if ln.startswith("dpkg: error processing"):
                # "package NAME (--configure):" or "archive /path/NAME_VERSION_ARCH.deb (--unpack):", then
                # the cause, indented
                subject = ln.removeprefix("dpkg: error processing package ").rstrip(":")
                if ln.startswith("dpkg: error processing archive"):
                    path, _, step = ln.removeprefix("dpkg: error processing archive ").rstrip(":").rpartition(" ")
                    subject = f"{Path(path).name.partition('_')[0]} {step}"
                cause = next((f.strip() for f in lines[i + 1:i + 3] if f.startswith(" ")), "")
                what = f"{subject}: {cause}" if cause else subject
            return LayeringError(f"dpkg failed: {what}", hint="\n".join(lines[max(0, i - 20):i + 3]))
    return LayeringError("dpkg failed", hint="\n".join(lines[-25:]))


def _status_reader(fd: int, progress: Progress) -> None:
    with os.fdopen(fd, "r", errors="replace") as stream:
        for line in stream:
            parts = line.rstrip("\n").split(":", 3)
            if len(parts) == 4 and parts[0] == "pmstatus":
                progress.message(f"[{float(parts[2]):3.0f}%] {parts[3]}")
            elif len(parts) == 4 and parts[0] == "pmerror":
                progress.message(f"error: {parts[1]}: {parts[3]}")


@contextmanager
def _stdout_to(log: Path) -> Iterator[None]:
    """APT and dpkg write to fds 1 and 2: send them to the log while dpkg runs."""
    saved = [os.dup(1), os.dup(2)]
    fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        os.dup2(fd, 1)
        os.dup2(fd, 2)
        yield
    finally:
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        for f in (*saved, fd):
            os.close(f)
