"""A transaction's worker: one apt-ostree command, run in-process, reporting to the daemon.

The daemon starts ``/usr/bin/python3 -m apt_ostree.daemon.worker ARGV...`` with a pipe for
progress events, one JSON object per line (its fd number in $APT_OSTREE_EVENTS_FD), and reads
stdout and stderr whole: the client prints them as they are, so a command's output is the same
through the daemon and without it.
SIGUSR1 and SIGINT are the daemon's Cancel (apt_ostree/interrupt.py); the worker sends them to itself
when the daemon dies.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from typing import Any, TextIO

from apt_ostree import interrupt
from apt_ostree.cli import common
from apt_ostree.cli import main as cli_main
from apt_ostree.dbus_names import NO_DAEMON_ENV
from apt_ostree.progress import Progress

EVENTS_FD_ENV = "APT_OSTREE_EVENTS_FD"
PARENT_ENV = "APT_OSTREE_DAEMON_PID"


class EventProgress(Progress):
    """Progress as JSON lines: {"step": title}, {"message": text}, {"output": line}, ..."""

    def __init__(self, stream: TextIO) -> None:
        super().__init__()
        self._stream = stream

    def _emit(self, **event: Any) -> None:
        self._stream.write(json.dumps(event) + "\n")
        self._stream.flush()

    def step(self, title: str) -> None:
        self.check_cancelled()  # a new step is a safe point to stop at
        self._emit(step=title)

    def message(self, text: str) -> None:
        self._emit(message=text)

    def output(self, line: str) -> None:
        self._emit(output=line)

    def download(self, done: int, total: int) -> None:
        self._emit(download=[done, total])

    def done(self) -> None:
        self._emit(done=True)


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
    os.environ[NO_DAEMON_ENV] = "1"  # the command runs here, never through the daemon again
    events = os.fdopen(int(os.environ.pop(EVENTS_FD_ENV)), "w", buffering=1)
    common.set_progress_factory(lambda verbose: EventProgress(events))
    _cancel_when_daemon_dies(int(os.environ.pop(PARENT_ENV)))
    return cli_main.main(argv)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
