"""Killing a command at its N-th progress step and checking what it left behind."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from tests.cleanup import mounts_below
from tests.conftest import TOP
from tests.root.test_deployments import status
from tests.root.test_hardening import deploy_dirs, listed
from tests.root.test_layering import fsck

ENV = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "PYTHONPATH": str(TOP), "LC_ALL": "C.UTF-8",
       "APT_OSTREE_NO_DAEMON": "1"}


@dataclass(frozen=True)
class Kill:
    step: str  # the last step the command reported before the kill
    delay: float  # seconds into that step


@dataclass(frozen=True)
class Series:
    kills: tuple[Kill, ...]
    returncode: int  # of the run that was not killed (it reported fewer steps than the next kill point)
    stderr: str


def session_alive(sid: int) -> bool:
    """Whether any process of session ``sid`` (the killed command's children: APT, dpkg, bwrap) is left."""
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[3]) == sid and fields[0] != "Z":
            return True
    return False


def run_killed(argv: Sequence[str | Path], at_step: int, delay: float, env: Mapping[str, str] = ENV,
               timeout: float = 600) -> tuple[Kill | None, int, str]:
    """Run the CLI; once it reports its ``at_step``-th step (1-based), wait ``delay`` s and SIGKILL it
    (the main process only, as the OOM killer would). (None, exit code, stderr) when it ended first."""
    proc = subprocess.Popen(["/usr/bin/python3", "-m", "apt_ostree.cli.main", *map(str, argv)], env=dict(env),
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, start_new_session=True)
    assert proc.stderr is not None
    seen, lines, deadline = 0, [], time.monotonic() + timeout
    for line in proc.stderr:
        lines.append(line)
        if line.startswith("==> "):
            seen += 1
            if seen == at_step:
                time.sleep(delay)
                if proc.poll() is not None:
                    break
                proc.send_signal(signal.SIGKILL)
                proc.wait()
                while session_alive(proc.pid) and time.monotonic() < deadline:
                    time.sleep(0.1)
                assert not session_alive(proc.pid), "the killed command's children outlived it"
                return Kill(line[4:].strip(), delay), -9, "".join(lines)
    rest = proc.stderr.read()
    return None, proc.wait(timeout=timeout), "".join(lines) + rest


def kill_series(argv: Sequence[str | Path], root: Path, seed: int, max_kills: int = 12) -> Series:
    """Kill ``argv`` at its 1st, 2nd, ... step (a random delay into each), checking the sysroot after
    each kill, until a run completes (the retry that succeeds)."""
    rnd = random.Random(seed)
    kills: list[Kill] = []
    for step in range(1, max_kills + 2):
        before = status(root)
        kill, rc, err = run_killed(argv, step, rnd.uniform(0.0, 0.6))
        if kill is None:
            return Series(tuple(kills), rc, err)
        kills.append(kill)
        check_after_kill(root, before, kill)
    raise AssertionError(f"{argv}: still running after {max_kills} kills")


def check_after_kill(root: Path, before: list[dict[str, object]], kill: Kill) -> None:
    """No mount left; the deployment list is the old one, or one complete new deployment before it;
    every listed deployment's directory is whole."""
    where = f"killed {kill.delay:.2f} s into {kill.step!r}"
    assert mounts_below(root) == [], f"{where}: mounts left: {mounts_below(root)}"
    now = status(root)
    key = [(d["checksum"], d["serial"]) for d in before]
    got = [(d["checksum"], d["serial"]) for d in now]
    assert got == key or (len(got) >= 2 and got[1] == key[0]), f"{where}: the old default lost: {key} -> {got}"
    for d in now:
        path = root / f"ostree/deploy/debian/deploy/{d['checksum']}.{d['serial']}"
        assert (path / "usr/bin").is_dir() and path.with_name(path.name + ".origin").is_file(), f"{where}: {path}"


def check_after_series(root: Path, series: Series) -> None:
    """After the run that completed: no orphan deployment directory, nothing left in the repository's
    tmp by a layer, `ostree fsck` clean."""
    assert series.returncode in (0, 77), series.stderr[-3000:]
    assert deploy_dirs(root) == listed(root), f"orphans: {deploy_dirs(root) - listed(root)}"
    assert not list((root / "ostree/repo/tmp").glob("apt-ostree-layer-*"))
    fsck(root)
