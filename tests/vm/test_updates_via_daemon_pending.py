"""Several changes before one reboot add up (issue 17), in the booted guest through apt-ostreed:
an install (through a daemon that starts slower than D-Bus's activation timeout), two installs
started at the same time (the daemon queues the second; its journal names both transactions), a
kernel argument and a base package removal; one reboot proves them all, and that the packages
layered before (htop, from test_updates_layering.py) stay."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.vm.qemu import Guest
from tests.vm.test_updates import booted, reboot

pytestmark = pytest.mark.vm


def _staged(g: Guest) -> dict[str, Any]:
    data = json.loads(g.run("apt-ostree status --json").stdout)
    [staged] = [d for d in data["deployments"] if d["staged"]]
    assert data["changes-build-on"] == staged["id"]
    return dict(staged)


def _state(d: dict[str, Any]) -> tuple[list[str], list[str], bool]:
    return sorted(d["requested-packages"]), d["requested-base-removals"], "x=1" in d["kernel-arguments"].split()


def test_changes_before_one_reboot(guest: Guest) -> None:
    g = guest
    g.run("printf '[Daemon]\\nIdleExitTimeout=600\\n' > /etc/apt-ostreed.conf && systemctl stop apt-ostreed")
    start = booted(g)
    kept = sorted(start["requested-packages"])  # type: ignore[call-overload]
    assert not any(d["staged"] for d in json.loads(g.run("apt-ostree status --json").stdout)["deployments"])

    def expect(*names: str) -> list[str]:
        return sorted([*kept, *names])

    # a daemon that starts slower than D-Bus waits (25 s): the client waits for it, nothing is lost
    g.run("mkdir -p /run/systemd/system/apt-ostreed.service.d && printf '[Service]\\nExecStartPre=/bin/sleep 30\\n"
          "TimeoutStartSec=300\\n' > /run/systemd/system/apt-ostreed.service.d/slow.conf && systemctl daemon-reload"
          " && systemctl stop apt-ostreed")
    slow = g.run("apt-ostree install tree", timeout=900)
    assert "Waiting for apt-ostreed to start" in slow.stderr, slow.stderr
    g.run("rm -r /run/systemd/system/apt-ostreed.service.d && systemctl daemon-reload")
    assert _state(_staged(g)) == (expect("tree"), [], False)

    # two clients at once: apt-ostreed runs one transaction and queues the other; both add up
    g.run("(apt-ostree install bc >/tmp/i1.log 2>&1; echo $? >/tmp/i1.rc) & "
          "(apt-ostree install jq >/tmp/i2.log 2>&1; echo $? >/tmp/i2.rc) & wait", timeout=1800)
    logs = g.run("cat /tmp/i1.log /tmp/i2.log").stdout
    assert g.run("cat /tmp/i1.rc /tmp/i2.rc").stdout.split() == ["0", "0"], logs
    assert "Waiting for transaction" in logs, logs
    assert _state(_staged(g)) == (expect("bc", "jq", "tree"), [], False)

    journal = g.run("journalctl -u apt-ostreed --no-pager -o cat").stdout
    assert "running" in journal and "install bc" in journal and "install jq" in journal, journal[-2000:]
    g.run("apt-ostree kargs --append=x=1", timeout=600)
    assert _state(_staged(g)) == (expect("bc", "jq", "tree"), [], True)
    g.run("apt-ostree override remove less", timeout=900)
    staged = _staged(g)
    assert _state(staged) == (expect("bc", "jq", "tree"), ["less"], True)
    assert f"Changes build on: the staged deployment {staged['id']}" in g.run("apt-ostree status").stdout

    reboot(g)
    now = booted(g)
    assert now["id"] != start["id"]
    assert _state(now) == (expect("bc", "jq", "tree"), ["less"], True)
    assert "x=1" in g.run("cat /proc/cmdline").stdout.split()
    assert g.run("command -v less", check=False).returncode != 0
    assert g.run("dpkg-query -W -f='${db:Status-Abbrev}' tree bc jq").stdout.split() == ["ii", "ii", "ii"]
    assert g.run("tree --version && jq --version && echo 2+2 | bc").stdout.strip().endswith("4")
    if "htop" in kept:
        assert g.run("command -v htop", check=False).returncode == 0
    assert g.run("systemctl --failed --no-legend").stdout.strip() == ""
    assert json.loads(g.run("apt-ostree status --json").stdout)["changes-build-on"] is None
