"""A transaction's worker: one request (apt_ostree.core.ops), run as the CLI runs it in-process.

The daemon starts ``/usr/bin/python3 -m apt_ostree.daemon.worker SYSROOT REQUEST-JSON`` with a
pipe for events, one JSON object per line (its fd number in $APT_OSTREE_EVENTS_FD): progress
({"step": ...}, {"message": ...}, ...), then {"result": RESULT} or {"error": CLASS, "message":
..., "hint": ...} (apt_ostree.core.wire). Its stdout and stderr go to the daemon's journal. A
process per transaction: python-apt's configuration is per process, and it holds the GIL while
dpkg runs.
SIGUSR1 and SIGINT are the daemon's Cancel (apt_ostree/interrupt.py); the worker sends them to itself
when the daemon dies.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any, TextIO

from apt_ostree import interrupt
from apt_ostree.dbus_names import NO_DAEMON_ENV
from apt_ostree.errors import AptOstreeError, Cancelled
from apt_ostree.progress import Progress

EVENTS_FD_ENV = "APT_OSTREE_EVENTS_FD"
PARENT_ENV = "APT_OSTREE_DAEMON_PID"


class EventProgress(Progress):
    """Progress as JSON lines: {"step": title}, {"message": text}, {"output": line}, ..."""

    def __init__(self, stream: TextIO) -> None:
        super().__init__()
        self._stream = stream

    def emit(self, **event: Any) -> None:
        self._stream.write(json.dumps(event) + "\n")
        self._stream.flush()

    def step(self, title: str) -> None:
        self.check_cancelled()  # a new step is a safe point to stop at
        self.emit(step=title)

    def message(self, text: str) -> None:
        self.emit(message=text)

    def output(self, line: str) -> None:
        self.emit(output=line)

    def download(self, done: int, total: int) -> None:
        self.emit(download=[done, total])

    def done(self) -> None:
        self.emit(done=True)


def _cancel_when_daemon_dies(daemon: int) -> None:
    """If the daemon dies, cancel as its Cancel would (apt_ostree/interrupt.py).

    A forked watcher process does it, not a thread: python-apt holds the GIL while dpkg runs."""
    worker = os.getpid()
    if os.fork() != 0:
        return
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # (the cancel below reaches this process too)
    os.closerange(0, 1024)  # not the worker's pipes: the daemon waits for their end
    try:
        while os.getppid() == worker:
            if _parent_of(worker) != daemon:  # reparented: the daemon is gone (a zombie counts as gone)
                os.kill(worker, interrupt.CANCEL_SIGNAL)
                os.killpg(worker, signal.SIGINT)
                break
            time.sleep(0.5)
    finally:
        os._exit(0)


def _parent_of(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return int(f.read().rsplit(")", 1)[1].split()[1])
    except (OSError, ValueError, IndexError):
        return 0


def main(argv: list[str]) -> int:
    os.environ[NO_DAEMON_ENV] = "1"
    events: TextIO
    if EVENTS_FD_ENV in os.environ:  # a transaction
        events = os.fdopen(int(os.environ.pop(EVENTS_FD_ENV)), "w", buffering=1)
        _cancel_when_daemon_dies(int(os.environ.pop(PARENT_ENV)))
    else:  # a method that waits for it (Search): events on stdout
        events = sys.stdout
    progress = EventProgress(events)
    interrupt.install()
    logging.basicConfig(level=logging.INFO, format="%(levelname)s: %(message)s", stream=sys.stderr)
    from apt_ostree.core import wire
    from apt_ostree.core.execute import execute

    try:
        sysroot, request = Path(argv[0]), wire.decode(json.loads(argv[1]))
        result = execute(request, sysroot, progress)
    except AptOstreeError as e:
        if interrupt.requested() and not isinstance(e, Cancelled):  # (dpkg stopped by the cancel's SIGINT)
            e = Cancelled("cancelled")
        progress.emit(**wire.encode_error(e))
        return e.exit_code
    except KeyboardInterrupt:
        progress.emit(**wire.encode_error(Cancelled("interrupted")))
        return 130
    progress.emit(result=wire.encode(result))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
