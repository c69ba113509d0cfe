"""The one helper through which every subprocess runs.

It starts from a clean environment, logs the argv, forwards stderr lines to
the progress renderer, keeps the stderr tail for the error, honours
cancellation and raises :class:`CommandError` on failure.
"""

from __future__ import annotations

import collections
import logging
import os
import select
import shlex
import signal
import subprocess
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from apt_ostree.errors import Cancelled, CommandError
from apt_ostree.progress import Progress

log = logging.getLogger(__name__)

CLEAN_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
STDERR_TAIL_LINES = 40
CANCEL_POLL = 0.2  # seconds between checks for a cancel while a child runs


@dataclass(frozen=True)
class Result:
    argv: tuple[str, ...]
    returncode: int
    stdout: str
    stderr_tail: tuple[str, ...]


def clean_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """A minimal, predictable environment for child processes."""
    env = {"PATH": CLEAN_PATH, "LC_ALL": "C.UTF-8", "LANG": "C.UTF-8", "HOME": "/root"}
    for key in ("TMPDIR", "http_proxy", "https_proxy", "no_proxy"):
        if key in os.environ:
            env[key] = os.environ[key]
    if extra:
        env.update(extra)
    return env


def _pump(stream: IO[str], tail: collections.deque[str], progress: Progress | None) -> None:
    for raw in stream:
        line = raw.rstrip("\n")
        tail.append(line)
        if progress is not None:
            progress.output(line)
        else:
            log.debug("| %s", line)


def run(
    argv: Sequence[str | Path],
    *,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
    capture: bool = False,
    check: bool = True,
    progress: Progress | None = None,
    stdin_text: str | None = None,
    what: str | None = None,
) -> Result:
    """Run ``argv``; return its result, raise CommandError if it fails and ``check``.

    ``capture`` collects stdout as text (otherwise stdout goes to our stderr so
    that stdout stays for results). ``what`` names the step in the error message.
    """
    args = tuple(str(a) for a in argv)
    log.info("run: %s", shlex.join(args))
    if progress is not None:
        progress.check_cancelled()
    tail: collections.deque[str] = collections.deque(maxlen=STDERR_TAIL_LINES)
    proc = subprocess.Popen(
        args,
        env=clean_env(env),
        cwd=cwd,
        stdin=subprocess.PIPE if stdin_text is not None else subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        errors="replace",
        start_new_session=True,
    )
    assert proc.stderr is not None and proc.stdout is not None
    out_chunks: list[str] = []
    err_thread = threading.Thread(target=_pump, args=(proc.stderr, tail, progress), daemon=True)
    err_thread.start()
    if capture:
        out_thread = threading.Thread(
            target=lambda: out_chunks.append(proc.stdout.read() if proc.stdout else ""), daemon=True
        )
    else:
        out_thread = threading.Thread(target=_pump, args=(proc.stdout, tail, progress), daemon=True)
    out_thread.start()
    if stdin_text is not None and proc.stdin is not None:
        try:
            proc.stdin.write(stdin_text)
        finally:
            proc.stdin.close()
    cancelled = False
    try:
        while not _exited(proc, CANCEL_POLL):
            if progress is not None and progress.cancelled and not cancelled:
                cancelled = True
                _terminate(proc)
    except BaseException:
        # Ctrl-C or an error in the caller: the child runs in its own session, so stop it here.
        _terminate(proc)
        raise
    err_thread.join()
    out_thread.join()
    if cancelled:
        raise Cancelled(f"{what or args[0]} cancelled")
    result = Result(args, proc.returncode, "".join(out_chunks), tuple(tail))
    if check and proc.returncode != 0:
        raise CommandError(
            f"{what or os.path.basename(args[0])} failed (exit code {proc.returncode})"
            + (f": {_last_meaningful(tail)}" if tail else ""),
            hint="\n".join(tail) if tail else None,
            returncode=proc.returncode,
        )
    return result


def _exited(proc: subprocess.Popen[str], timeout: float) -> bool:
    """Wait up to ``timeout`` seconds for ``proc``; True once it has exited (reaped).
    A pidfd wakes us the moment the child exits (Popen.wait's timeout polls with sleeps of
    up to 50 ms, which every short command paid)."""
    if proc.returncode is not None:
        return True
    try:
        pidfd = os.pidfd_open(proc.pid)
    except (OSError, AttributeError):  # no pidfd support: Popen's own wait
        try:
            proc.wait(timeout=timeout)
            return True
        except subprocess.TimeoutExpired:
            return False
    try:
        poller = select.poll()  # (not select(): no limit on the fd's number)
        poller.register(pidfd, select.POLLIN)
        if not poller.poll(timeout * 1000):
            return False
    finally:
        os.close(pidfd)
    proc.wait()
    return True


def spawn(argv: Sequence[str | Path], *, env: Mapping[str, str] | None = None,
          pass_fds: Sequence[int] = (), stdin: int | None = None) -> subprocess.Popen[bytes]:
    """Start ``argv`` without waiting (the daemon's transaction workers, filters): clean environment,
    stdin from the file descriptor ``stdin`` or /dev/null, stdout and stderr as pipes for the caller
    to read and reap, in a session of its own (so that the caller can signal its whole process group)."""
    args = tuple(str(a) for a in argv)
    log.info("spawn: %s", shlex.join(args))
    return subprocess.Popen(args, env=clean_env(env), stdin=subprocess.DEVNULL if stdin is None else stdin,
                            stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, pass_fds=tuple(pass_fds), start_new_session=True)


Process = subprocess.Popen[bytes]


def reap(proc: Process, timeout: float = 10) -> None:
    """Wait up to ``timeout`` seconds for a spawned child to exit, then kill it; close its pipes."""
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    for stream in (proc.stdout, proc.stderr):
        if stream is not None:
            stream.close()


def _terminate(proc: subprocess.Popen[str]) -> None:
    """SIGTERM the child's process group; SIGKILL it if it has not gone within 10 s."""
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    except ProcessLookupError:
        pass


def _last_meaningful(tail: collections.deque[str]) -> str:
    """The most telling line of a stderr tail: the last line mentioning an error."""
    for line in reversed(tail):
        low = line.lower()
        if line.strip() and ("error" in low or low.startswith("e:")):
            return line.strip()
    for line in reversed(tail):
        if line.strip():
            return line.strip()
    return ""


def unmount_below(path: Path) -> None:
    """Unmount whatever a failed build left mounted under ``path`` (deepest first).

    mmdebstrap's file-mirror-automount hook bind-mounts file:// repositories and
    local .debs into the chroot and only unmounts them when the build succeeds.
    """
    prefix = str(path.resolve()) + "/"
    with open("/proc/self/mountinfo") as f:
        points = [line.split()[4] for line in f]
    for point in sorted((p for p in points if p.startswith(prefix)), key=len, reverse=True):
        try:
            run(["umount", point], what=f"umount {point}")
        except CommandError:
            run(["umount", "--lazy", point], what=f"umount {point}")
