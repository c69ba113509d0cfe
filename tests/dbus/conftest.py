"""The dbus tier: a private dbus-daemon configured like the system bus, apt-ostreed on it serving a
sysroot directory, and real clients (the CLI, busctl, Gio) talking to it."""

from __future__ import annotations

import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import TOP, Cli, Composed
from tests.debrepo import PACKAGES, SH, Deb, SignedRepo, make_repo
from tests.root.conftest import make_sysroot, trust, updates_template  # noqa: F401 (a fixture)

BUS_CONF = """<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>system</type>
  <listen>unix:path={socket}</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow user="*"/>
    <deny own="*"/>
    <deny send_type="method_call"/>
    <allow send_type="signal"/>
    <allow send_requested_reply="true" send_type="method_return"/>
    <allow send_requested_reply="true" send_type="error"/>
    <allow receive_type="method_call"/>
    <allow receive_type="method_return"/>
    <allow receive_type="error"/>
    <allow receive_type="signal"/>
    <allow send_destination="org.freedesktop.DBus" send_interface="org.freedesktop.DBus"/>
    <allow send_destination="org.freedesktop.DBus" send_interface="org.freedesktop.DBus.Introspectable"/>
    <allow send_destination="org.freedesktop.DBus" send_interface="org.freedesktop.DBus.Properties"/>
  </policy>
  <include>{policy}</include>
</busconfig>
"""

# a package whose postinst runs until it is killed: something to cancel
SLOW = Deb("aot-slow", files={"/usr/share/aot-slow/README": "x\n"},
           scripts={"postinst": SH + "sleep 600\n"})


@dataclass
class Bus:
    address: str
    socket: Path

    @property
    def env(self) -> dict[str, str]:
        return {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "PYTHONPATH": str(TOP), "LC_ALL": "C.UTF-8",
                "DBUS_SYSTEM_BUS_ADDRESS": self.address}


@pytest.fixture(scope="session")
def bus() -> Iterator[Bus]:
    """A private bus with the system bus's policy and apt-ostreed's own policy file."""
    tmp = Path(tempfile.mkdtemp(prefix="apt-ostree-bus-"))
    tmp.chmod(0o755)  # other users (the polkit test's nobody) reach the socket
    socket = tmp / "system_bus_socket"
    conf = tmp / "bus.conf"
    conf.write_text(BUS_CONF.format(socket=socket, policy=TOP / "data/org.projectatomic.aptostree1.conf"))
    proc = subprocess.Popen(["dbus-daemon", f"--config-file={conf}", "--nofork", "--nopidfile"],
                            stderr=subprocess.PIPE)
    for _ in range(100):
        if socket.exists():
            break
        time.sleep(0.05)
    else:
        proc.kill()
        err = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
        raise AssertionError(f"dbus-daemon did not start: {err}")
    socket.chmod(0o777)
    yield Bus(f"unix:path={socket}", socket)
    proc.terminate()
    proc.wait()
    shutil.rmtree(tmp, ignore_errors=True)


@pytest.fixture(scope="session")
def dbus_repo() -> Iterator[SignedRepo]:
    root = Path(tempfile.mkdtemp(prefix="apt-ostree-dbus-aot-", dir="/var/tmp"))
    yield make_repo(root, (*PACKAGES, SLOW))
    shutil.rmtree(root)


@dataclass
class Daemon:
    proc: subprocess.Popen[str]
    sysroot: Path
    bus: Bus
    log: Path

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            self.proc.wait(timeout=120)


def start_daemon(bus: Bus, sysroot: Path, config: str = "[Daemon]\nIdleExitTimeout=0\n") -> Daemon:
    """apt-ostreed serving ``sysroot`` on the private bus; returns once it owns its name."""
    conf = sysroot.parent / f"apt-ostreed-{sysroot.name}.conf"
    conf.write_text(config)
    log = sysroot.parent / f"apt-ostreed-{sysroot.name}.log"
    proc = subprocess.Popen(["/usr/bin/python3", "-m", "apt_ostree.cli.main", "--debug", "start-daemon", "--sysroot",
                             str(sysroot), "--config", str(conf)], env=bus.env, text=True,
                            stdout=subprocess.DEVNULL, stderr=log.open("w"))
    for _ in range(200):
        owned = subprocess.run(["busctl", f"--address={bus.address}", "status", "org.projectatomic.aptostree1"],
                               capture_output=True)
        if owned.returncode == 0:
            return Daemon(proc, sysroot, bus, log)
        if proc.poll() is not None:
            break
        time.sleep(0.1)
    proc.kill()
    raise AssertionError(f"apt-ostreed did not start:\n{log.read_text()[-3000:]}")


def layer_sysroot(root: Path, updates: Path, minimal: Composed, repo: SignedRepo) -> Path:
    return trust(make_sysroot(root, updates, minimal), repo)


@pytest.fixture
def daemon_root(updates_template: Path, minimal: Composed, dbus_repo: SignedRepo,  # noqa: F811
                tmp_path: Path, bus: Bus) -> Iterator[Daemon]:
    """A fresh sysroot (trusting the test repository) and apt-ostreed serving it."""
    updates = tmp_path / "updates"
    subprocess.run(["cp", "-al", str(updates_template), str(updates)], check=True)
    daemon = start_daemon(bus, layer_sysroot(tmp_path / "sysroot", updates, minimal, dbus_repo))
    yield daemon
    daemon.stop()


def cli(bus: Bus, *args: str | Path, check: bool = True, daemon: bool = True) -> Cli:
    """The CLI: through the daemon on the private bus, or (daemon=False) in-process."""
    env = bus.env if daemon else {**bus.env, "APT_OSTREE_NO_DAEMON": "1"}
    proc = subprocess.run(["/usr/bin/python3", "-m", "apt_ostree.cli.main", *map(str, args)], env=env,
                          capture_output=True, text=True)
    if check and proc.returncode != 0:
        raise AssertionError(f"apt-ostree {' '.join(map(str, args))} exited {proc.returncode}:\n{proc.stderr[-3000:]}")
    return Cli(proc.returncode, proc.stdout, proc.stderr)


def cli_background(bus: Bus, *args: str | Path) -> subprocess.Popen[str]:
    return subprocess.Popen(["/usr/bin/python3", "-m", "apt_ostree.cli.main", *map(str, args)], env=bus.env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def wait_for_process(pattern: str, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if subprocess.run(["pgrep", "-f", pattern], capture_output=True).returncode == 0:
            return
        time.sleep(0.2)
    raise AssertionError(f"no process matching {pattern!r} within {timeout} s")


def gone(pattern: str) -> bool:
    return subprocess.run(["pgrep", "-f", pattern], capture_output=True).returncode != 0
