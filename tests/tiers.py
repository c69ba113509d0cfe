"""`make check`: the whole suite, the vm tier side by side with the others.

The guest runs under TCG and is slow mostly on one core while it boots or builds a layer; the root,
dbus and unit tiers compose and layer on the host meanwhile. The Debian 12 guest's test (a guest of
its own, VM_LATER) runs after those tiers, beside the rest of the vm tier: the Debian 13 guests' tests
are the longest chain. The composes both sides use (Debian 13, Debian 12, Debian 13 plus htop) are
made first, once, and handed to both pytest runs (tests/conftest.py's IMAGES_ENV). The vm tier's
output goes to a log that is printed when it ends. Either run failing, or running no test (pytest's
exit 5), fails the whole.

    /usr/bin/python3 -m tests.tiers [PYTEST ARGS...]   (as root; PYTEST ARGS go to both runs)
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import threading
import time

from tests.conftest import (
    BOOKWORM,
    BOOKWORM_REF,
    BUILD,
    IMAGES_ENV,
    MINIMAL,
    MINIMAL_REF,
    TOP,
    Composed,
    compose,
    compose_extra,
    images_env,
)

PYTEST = ["/usr/bin/python3", "-m", "pytest", "-v", "--durations=15"]
VM_TEMP = BUILD / "pytest-vm"  # (the vm tier leaves no immutable deployment directories on the host)
# guests of their own run after the root and dbus tiers, one after the other (the boot faults' and the
# fleet's guests run in the vm tier's chain: after the root and dbus tiers they made the whole ~80 min)
VM_LATER = ("tests/vm/test_upgrade_12_to_13.py",)


def prepare() -> dict[str, Composed]:
    work = BUILD / "test-images"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    cachedir = BUILD / "test-cache"
    cachedir.mkdir(exist_ok=True)
    minimal = compose(MINIMAL, MINIMAL_REF, work / "repo", cachedir)
    bookworm = compose(BOOKWORM, BOOKWORM_REF, minimal.repo, cachedir)
    extra = compose_extra(minimal, cachedir, work)
    return {"minimal": minimal, "bookworm": bookworm, "minimal_extra": extra}


class DiskWatch:
    """The least free space on the build's filesystem during the run (sampled), for the summary: a run
    that fills the disk fails in whatever test writes next, far from the cause."""

    def __init__(self) -> None:
        self.start = self.least = self.free()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)
        self._thread.start()

    @staticmethod
    def free() -> int:
        return shutil.disk_usage(BUILD).free

    def _watch(self) -> None:
        while not self._stop.wait(10):
            self.least = min(self.least, self.free())

    def summary(self) -> str:
        self._stop.set()
        gib = 1 << 30
        return (f"disk: {self.start / gib:.1f} GiB free at the start, {self.least / gib:.1f} GiB at the least "
                f"(the run used up to {(self.start - self.least) / gib:.1f} GiB)")


def say(text: str) -> None:
    print(f"=== tests/tiers.py: {text}", flush=True)


def main(args: list[str]) -> int:
    start = time.monotonic()
    BUILD.mkdir(exist_ok=True)
    disk = DiskWatch()
    say("composing the images the tiers share (examples/trixie.yaml, examples/bookworm.yaml, +htop)")
    env = {**os.environ, IMAGES_ENV: images_env(prepare())}
    say(f"composed in {time.monotonic() - start:.0f} s; the vm tier runs alongside (log: _build/vm-tier.log)")
    log = BUILD / "vm-tier.log"
    with open(log, "w") as out:
        ignore = [f"--ignore={p}" for p in VM_LATER]
        vm = subprocess.Popen([*PYTEST, "-m", "vm", f"--basetemp={VM_TEMP}", *ignore, *args, "tests"], cwd=TOP,
                              env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            others = subprocess.run([*PYTEST, "-m", "not vm", *args, "tests"], cwd=TOP, env=env).returncode
            say(f"unit, root and dbus tiers: exit {others} after {time.monotonic() - start:.0f} s; "
                f"now {' '.join(VM_LATER)}, beside the vm tier")
            later = subprocess.run([*PYTEST, "-m", "vm", f"--basetemp={VM_TEMP}-later", *args, *VM_LATER], cwd=TOP,
                                   env=env).returncode
            say(f"{' '.join(VM_LATER)}: exit {later} after {time.monotonic() - start:.0f} s; waiting for the vm tier")
            others = others or later
            vm_rc = vm.wait()
        finally:
            if vm.poll() is None:  # interrupted: the vm run and its guests with it
                os.killpg(vm.pid, signal.SIGTERM)
                vm.wait()
    sys.stdout.write(log.read_text())
    for commands in sorted([*VM_TEMP.glob("*/commands.log"), *VM_TEMP.with_name(VM_TEMP.name + "-later").glob(
            "*/commands.log")]):  # tests/vm/qemu.py: each guest command's time
        if commands.parent.is_symlink():  # (pytest's *current links)
            continue
        say(f"{commands.relative_to(TOP)}:\n{commands.read_text()}")
    say(disk.summary())
    say(f"vm tier: exit {vm_rc}; unit, root and dbus tiers: exit {others}; "
        f"{(time.monotonic() - start) / 60:.1f} min in all")
    return 1 if others or vm_rc else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
