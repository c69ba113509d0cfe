"""One progress interface, several renderers.

Every engine operation takes a :class:`Progress`. It reports steps and
messages and is asked, between steps and while subprocesses run, whether the
caller has cancelled. The terminal renderer writes to stderr; a D-Bus renderer
(daemon) turns the same calls into signals.
"""

from __future__ import annotations

import sys
import threading
import time
from typing import TextIO

from apt_ostree import interrupt
from apt_ostree.errors import Cancelled


class Progress:
    """Base renderer: silent, never cancelled unless :meth:`cancel` is called."""

    def __init__(self) -> None:
        self._cancel = threading.Event()

    # reporting -------------------------------------------------------
    def step(self, title: str) -> None:
        """A new long-running step starts."""

    def message(self, text: str) -> None:
        """A line of information inside the current step."""

    def output(self, line: str) -> None:
        """A line of output from a subprocess (shown only when verbose)."""

    def download(self, done: int, total: int) -> None:
        """Bytes downloaded so far of ``total`` (repeated while a download runs)."""

    def done(self) -> None:
        """The operation finished."""

    # cancellation ----------------------------------------------------
    def cancel(self) -> None:
        self._cancel.set()

    @property
    def cancelled(self) -> bool:
        return self._cancel.is_set() or interrupt.requested()

    def check_cancelled(self) -> None:
        if self.cancelled:
            raise Cancelled("cancelled")


class TerminalProgress(Progress):
    """Human-readable progress on a terminal (stderr)."""

    def __init__(self, stream: TextIO | None = None, verbose: bool = False) -> None:
        super().__init__()
        self._stream = stream if stream is not None else sys.stderr
        self._verbose = verbose
        self._started = time.monotonic()
        self._step_started: float | None = None
        self._title = ""

    def _finish_step(self) -> None:
        if self._step_started is not None:
            took = time.monotonic() - self._step_started
            self._stream.write(f"    {self._title}: done in {took:.1f}s\n")
            self._stream.flush()
            self._step_started = None

    def step(self, title: str) -> None:
        self.check_cancelled()  # a new step is a safe point to stop at
        self._finish_step()
        self._title = title
        self._step_started = time.monotonic()
        self._stream.write(f"==> {title}\n")
        self._stream.flush()

    def message(self, text: str) -> None:
        self._stream.write(f"    {text}\n")
        self._stream.flush()

    def output(self, line: str) -> None:
        if self._verbose:
            self._stream.write(f"    | {line}\n")
            self._stream.flush()

    def download(self, done: int, total: int) -> None:
        if not self._stream.isatty():
            return
        width = 30
        filled = width * done // total if total else width
        self._stream.write(f"\r    [{'#' * filled}{'.' * (width - filled)}] {done / 1e6:6.1f}/{total / 1e6:.1f} MB")
        if done >= total:
            self._stream.write("\n")
        self._stream.flush()

    def done(self) -> None:
        self._finish_step()
