#!/usr/bin/python3
"""`make demo`, second half: build a disk image from the composed commit, boot it in QEMU (TCG),
show `apt-ostree status` from inside the booted guest, layer htop with `apt-ostree install`
(from the machine's APT mirror, through QEMU's NAT), reboot into it and show the status again.

    /usr/bin/python3 examples/boot_demo.py REPO REF WORKDIR
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

TOP = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(TOP))

from tests.vm.qemu import Guest, make_ssh_key  # noqa: E402


def show(guest: Guest, cmd: str, timeout: float = 120) -> None:
    result = guest.run(cmd, check=False, timeout=timeout)
    print(f"# {cmd}\n{(result.stdout + result.stderr).rstrip()}", flush=True)


def main() -> int:
    repo, ref, work = Path(sys.argv[1]), sys.argv[2], Path(sys.argv[3])
    work.mkdir(parents=True, exist_ok=True)
    key, pub = make_ssh_key(work)
    disk = work / "disk.qcow2"
    disk.unlink(missing_ok=True)
    subprocess.run(["/usr/bin/python3", "-m", "apt_ostree.cli.main", "compose", "disk-image", "--repo", str(repo),
                    "--ref", ref, "--format", "qcow2", "--root-ssh-key", str(pub), "--hostname", "apt-ostree-demo",
                    str(disk)], check=True, cwd=TOP,
                   env={"PYTHONPATH": str(TOP), "PATH": "/usr/sbin:/usr/bin:/sbin:/bin"})
    print(f"--- booting {disk} (QEMU, software emulation: about a minute)", flush=True)
    start = time.monotonic()
    with Guest(disk, ssh_key=key, serial_log=work / "serial.log", network=True) as guest:
        guest.wait_for_ssh(timeout=600)
        print(f"--- booted in {time.monotonic() - start:.0f} s; inside the guest:", flush=True)
        for cmd in ("apt-ostree status", "findmnt -no SOURCE,OPTIONS /usr", "systemctl is-system-running"):
            show(guest, cmd)
        guest.run("test -s /etc/resolv.conf || echo 'nameserver 10.0.2.3' > /etc/resolv.conf")
        show(guest, "apt-ostree install htop", timeout=900)
        print("--- rebooting into the new deployment", flush=True)
        guest.reboot(timeout=600)
        for cmd in ("apt-ostree status", "htop --version", "dpkg -l htop | tail -1"):
            show(guest, cmd)
        guest.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
