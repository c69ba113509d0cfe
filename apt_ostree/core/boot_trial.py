"""Automatic fallback: a new default deployment gets one boot, and is abandoned if it never completes.

Debian 12's and 13's libostree have no boot counting, so GRUB does it, with one variable in its
environment block ``/boot/grubenv`` (the boot file system's ``/grubenv``), ``aot_trial``:

- ``new``: written when a change makes a deployment other than the booted one the default (a staged
  deployment, a rollback to an older one). The static /boot/grub/grub.cfg (core/grub.py) turns it
  into ``tried`` and boots the default.
- ``tried``: the default was booted once. ``apt-ostree-boot-complete.service``, ordered after
  boot-complete.target, clears it when the default is what booted (:func:`confirm`). A boot that never
  gets there (a kernel panic, which ``panic=`` turns into a reboot; a power cut) leaves ``tried``, and
  GRUB then writes ``failed`` and boots the previous deployment (menu entry 1).
- ``failed``: GRUB keeps booting the previous deployment; ``status`` shows the default as failed to
  boot. A rollback (the booted one becomes the default) or a new deployment ends it.

The block is GRUB's format: exactly 1024 bytes, ``# GRUB Environment Block``, ``name=value`` lines,
padded with ``#``; rewritten in place (GRUB's save_env writes the same blocks; no rename).
"""

from __future__ import annotations

import os
from pathlib import Path

HEADER = b"# GRUB Environment Block\n"
SIZE = 1024
VAR = "aot_trial"
NEW, TRIED, FAILED = "new", "tried", "failed"


def env_path(sysroot: Path) -> Path:
    return sysroot / "boot/grubenv"


def read(path: Path) -> dict[str, str] | None:
    """The variables of the block at ``path``; None when there is none (an image from before the
    fallback, a boot loader other than GRUB) or it is not a GRUB environment block."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return None
    if len(data) != SIZE or not data.startswith(HEADER):
        return None
    out = {}
    for line in data[len(HEADER):].decode("utf-8", "replace").split("\n"):
        if line and not line.startswith("#") and "=" in line:
            key, _, value = line.partition("=")
            out[key] = value
    return out


def create(path: Path) -> None:
    """An empty block (a new disk image's /boot)."""
    path.write_bytes(_block({}))


def _block(values: dict[str, str]) -> bytes:
    body = b"".join(f"{k}={v}\n".encode() for k, v in values.items())
    if len(HEADER) + len(body) > SIZE:
        raise ValueError("GRUB environment block full")
    return HEADER + body + b"#" * (SIZE - len(HEADER) - len(body))


def _write(path: Path, values: dict[str, str]) -> None:
    data = _block(values)
    fd = os.open(path, os.O_WRONLY)
    try:
        os.pwrite(fd, data, 0)
        os.fsync(fd)
    finally:
        os.close(fd)


def state(sysroot: Path) -> str | None:
    values = read(env_path(sysroot))
    return values.get(VAR) if values is not None else None


def set_state(sysroot: Path, value: str | None) -> None:
    """Set (or, with None, clear) the trial state; nothing when the sysroot has no block."""
    path = env_path(sysroot)
    values = read(path)
    if values is None or values.get(VAR) == value:
        return
    if value is None:
        values.pop(VAR, None)
    else:
        values[VAR] = value
    _write(path, values)


def default_changed(sysroot: Path, default_is_booted: bool) -> None:
    """After a change of the default deployment: a booted default needs no trial (a rollback to
    the running system ends a fallback); any other gets one boot."""
    set_state(sysroot, None if default_is_booted else NEW)


def confirm(sysroot: Path, booted_is_default: bool) -> str:
    """After boot-complete.target: what this boot shows about the trial (and the block updated)."""
    current = state(sysroot)
    if current is None:
        return "no trial"
    if booted_is_default:
        if current in (TRIED, FAILED):
            set_state(sysroot, None)
            return "the default deployment booted: confirmed"
        return f"trial state {current!r} left as it is"  # ("new": staged during this boot)
    if current == TRIED:  # another entry was chosen by hand: the default has not had its boot
        set_state(sysroot, NEW)
        return "the default deployment was not booted (chosen at the menu): its trial stays"
    return "the default deployment failed to boot: the previous one is booted until a rollback or a new one"
