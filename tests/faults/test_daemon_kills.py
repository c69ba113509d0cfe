"""apt-ostreed SIGKILLed at every step of a transaction (a random delay into each, seeded): its worker
stops at the next safe point or finishes; nothing is lost (the checks of tests/faults/kills.py), and a
new daemon serves the retry."""

from __future__ import annotations

import random
import subprocess
import time
from pathlib import Path

import pytest

from tests.conftest import Composed
from tests.dbus.conftest import Bus, cli_background, gone, layer_sysroot, start_daemon
from tests.debrepo import SignedRepo
from tests.faults.kills import Kill, Series, check_after_kill, check_after_series
from tests.root.test_deployments import status

pytestmark = pytest.mark.faults


def test_daemon_killed_at_every_step(updates_template: Path, minimal: Composed, dbus_repo: SignedRepo,
                                     tmp_path: Path, bus: Bus) -> None:
    updates = tmp_path / "updates"
    subprocess.run(["cp", "-al", str(updates_template), str(updates)], check=True)
    root = layer_sysroot(tmp_path / "sysroot", updates, minimal, dbus_repo)
    rnd, kills = random.Random(7), []
    for step in range(1, 14):
        before = status(root)
        daemon = start_daemon(bus, root)
        client = cli_background(bus, "install", "--idempotent", "--sysroot", root, "aot-hello")
        assert client.stderr is not None
        seen, lines, killed = 0, [], None
        for line in client.stderr:
            lines.append(line)
            if line.startswith("==> "):
                seen += 1
                if seen == step:
                    delay = rnd.uniform(0.0, 0.6)
                    time.sleep(delay)
                    daemon.proc.kill()
                    daemon.proc.wait()
                    killed = Kill(line[4:].strip(), delay)
                    break
        rest = client.communicate(timeout=300)[1]
        if killed is None:
            daemon.stop()
            done = Series(tuple(kills), client.returncode, "".join(lines) + rest)
            break
        for _ in range(600):  # the worker notices, cancels at its next safe point (or finishes)
            if gone("apt_ostree.daemon.worker"):
                break
            time.sleep(0.2)
        assert gone("apt_ostree.daemon.worker"), f"the worker outlived its daemon ({killed})"
        kills.append(killed)
        check_after_kill(root, before, killed)
    else:
        raise AssertionError("the install never completed")
    print("daemon: killed at " + ", ".join(f"{k.step!r}+{k.delay:.2f}s" for k in done.kills))
    assert len(done.kills) >= 4, done.kills
    check_after_series(root, done)
    assert "aot-hello" in status(root)[0]["requested-packages"]  # type: ignore[operator]
