"""A staged deployment that did not finalize at shutdown: said by `status`, with its reason and request.

libostree finalizes a staged deployment at shutdown (ostree-finalize-staged.service) and prints nothing
when that fails: the machine boots the old deployment, /run (and with it the staged deployment) is gone.
What remains is libostree's /boot/ostree/finalize-failure.stamp, which ostree-boot-complete.service
reads early in the next boot, deletes, and fails with "ostree-finalize-staged.service failed on
previous boot: REASON" in this boot's journal. :func:`last_failure` reads that line, and the request
of the staged deployment from the record :func:`record_staged` keeps in the stateroot's /var when a
deployment is staged, so that the admin sees what did not happen and can ask for it again.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

from apt_ostree.run import run

if TYPE_CHECKING:
    from apt_ostree.core.sysroot import Deployment, Sysroot

RECORD = "lib/apt-ostree/last-staged.json"  # below the stateroot's /var
FAILED = re.compile(r"ostree-finalize-staged\.service failed on previous boot: (.*)")
BOOT_ID = Path("/proc/sys/kernel/random/boot_id")


def _boot_id() -> str:
    try:
        return BOOT_ID.read_text().strip()
    except OSError:
        return ""


def record_staged(var: Path, d: Deployment) -> None:
    """Keep what was staged (this boot's): read back by :func:`last_failure` after a failed finalization."""
    origin = d.origin
    record = {"id": d.id, "checksum": d.checksum, "origin": d.origin_refspec, "boot-id": _boot_id(),
              "requested-packages": list(origin.requested) if origin else [],
              "requested-local-packages": [p.name for p in origin.requested_local] if origin else [],
              "requested-base-removals": list(origin.override_remove) if origin else [],
              "kernel-arguments": d.kargs}
    path = var / RECORD
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(record, indent=1) + "\n")
    os.replace(tmp, path)


def last_failure(sysroot: Sysroot) -> dict[str, Any] | None:
    """This boot's report of the last shutdown's failed finalization: its reason, and the staged
    deployment's request when it was recorded (``staged``); None when there is none."""
    if not sysroot.is_booted:
        return None
    out = run(["journalctl", "-b", "-u", "ostree-boot-complete.service", "-o", "cat", "-q", "--no-pager"],
              capture=True, check=False).stdout
    reasons = [m.group(1).strip() for m in map(FAILED.search, out.splitlines()) if m]
    if not reasons:
        return None
    deployments = sysroot.deployments()
    staged = None
    booted = next((d for d in deployments if d.booted), None)
    if booted is not None:
        path = sysroot.path / "ostree/deploy" / booted.osname / "var" / RECORD
        try:
            record = json.loads(path.read_text())
        except (OSError, ValueError):
            record = None
        if isinstance(record, dict) and record.get("boot-id") != _boot_id() \
                and record.get("id") not in {d.id for d in deployments}:
            staged = record
    return {"reason": reasons[-1], "staged": staged}
