#!/usr/bin/python3
"""`make demo`, second half: build a disk image from the composed commit, boot it in QEMU (TCG),
and show `apt-ostree status` from inside the booted guest.

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
    with Guest(disk, ssh_key=key, serial_log=work / "serial.log") as guest:
        guest.wait_for_ssh(timeout=600)
        print(f"--- booted in {time.monotonic() - start:.0f} s; inside the guest:", flush=True)
        for cmd in ("apt-ostree status", "findmnt -no SOURCE,OPTIONS /usr", "systemctl is-system-running"):
            print(f"# {cmd}\n{guest.run(cmd, check=False).stdout.rstrip()}", flush=True)
        guest.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
