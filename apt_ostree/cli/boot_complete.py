"""apt-ostree-boot-complete.service (after boot-complete.target): this boot confirms the default
deployment's one trial boot, or records that GRUB fell back (apt_ostree/core/boot_trial.py)."""

from __future__ import annotations

import sys
from pathlib import Path

from apt_ostree.core import boot_trial
from apt_ostree.core.sysroot import Sysroot
from apt_ostree.errors import AptOstreeError


def main(root: Path = Path("/")) -> int:
    try:
        sysroot = Sysroot.open(root)
        deployments = [d for d in sysroot.deployments() if not d.staged]  # (as GRUB's menu was at boot)
        booted = next((d for d in deployments if d.booted), None)
        if booted is None:
            print("not booted from an OSTree deployment: nothing to confirm")
            return 0
        print(boot_trial.confirm(sysroot.path, booted_is_default=booted.id == deployments[0].id))
        return 0
    except (AptOstreeError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
