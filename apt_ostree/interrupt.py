"""Cancellation by signal, with a point of no return.

Ctrl-C in the CLI arrives as SIGINT; ``Cancel`` on a daemon transaction as SIGUSR1 to the worker
and SIGINT to its process group (which stops dpkg and maintainer scripts: APT ignores SIGINT
itself while dpkg runs, SIGUSR1 it leaves alone).

While a sysroot is changed (:func:`cooperative`, entered by ``Sysroot.locked()``), the handler only
records the request: raising from a signal handler could interrupt a clean-up half-way (a
``finally`` restoring a file descriptor, an unmount). The operation stops at the next safe point:
a new progress step, a subprocess being waited for (:func:`apt_ostree.run.run` stops it), and at
the latest when the final write would begin (:func:`committing` raises :class:`Cancelled`).
Context managers then unmount and delete what was being built, and nothing has changed. Once the
write has begun it finishes (libostree's deployment write is atomic, but a half-reported success is
not): a late cancel is ignored. Anywhere else (status, search, compose) the signal raises
:class:`Cancelled` at once.
"""

from __future__ import annotations

import signal
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType

from apt_ostree.errors import Cancelled

CANCEL_SIGNAL = signal.SIGUSR1  # the daemon's Cancel, sent to the transaction's worker
_state = {"committing": 0, "cooperative": 0, "requested": False}


def _handler(signum: int, frame: FrameType | None) -> None:
    if _state["committing"]:  # during the final write a cancel is too late
        return
    _state["requested"] = True
    if not _state["cooperative"]:
        raise Cancelled("cancelled" if signum in (signal.SIGINT, CANCEL_SIGNAL) else f"stopped by signal {signum}")


@contextmanager
def cooperative() -> Iterator[None]:
    """A change is being made: a cancel waits for the next safe point instead of raising."""
    _state["cooperative"] += 1
    try:
        yield
    finally:
        _state["cooperative"] -= 1


def install() -> None:
    """Make SIGINT, SIGTERM and SIGUSR1 cancel the operation (in the CLI and the daemon's worker)."""
    for signum in (signal.SIGINT, signal.SIGTERM, CANCEL_SIGNAL):
        signal.signal(signum, _handler)


def requested() -> bool:
    """Whether a cancel has been asked for (before the final write)."""
    return bool(_state["requested"])


def check() -> None:
    if _state["requested"]:
        raise Cancelled("cancelled")


@contextmanager
def committing() -> Iterator[None]:
    """The write that makes a change visible: refused after a cancel, not interrupted once begun."""
    check()
    _state["committing"] += 1
    try:
        yield
    finally:
        _state["committing"] -= 1

