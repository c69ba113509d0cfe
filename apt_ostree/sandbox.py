"""Bubblewrap sandboxes, described as data.

A :class:`Sandbox` says which root file system to use, what to bind where,
which parts are read-only, whether there is network, and which capabilities
the command keeps. :meth:`Sandbox.argv` turns that description into the
``bwrap`` command line; nothing else in the project spells bwrap options.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

BWRAP = "/usr/bin/bwrap"
SANDBOX_PATH = "/usr/sbin:/usr/bin:/sbin:/bin"


@dataclass(frozen=True)
class Bind:
    """Bind ``source`` (a host path) on ``dest`` (a path inside the sandbox)."""

    source: Path
    dest: str
    readonly: bool = False


@dataclass(frozen=True)
class Sandbox:
    rootfs: Path
    binds: tuple[Bind, ...] = ()
    readonly_paths: tuple[str, ...] = ()
    tmpfs: tuple[str, ...] = ("/tmp", "/run")
    network: bool = False
    capabilities: tuple[str, ...] = ()
    host_sys: bool = False
    env: Mapping[str, str] = field(default_factory=dict)
    cwd: str = "/"

    def argv(self, command: Sequence[str]) -> list[str]:
        args = [BWRAP, "--bind", str(self.rootfs), "/"]
        args += ["--proc", "/proc", "--dev", "/dev"]
        # bwrap leaves /proc/sys writable as root (it tests the directory, which is never writable):
        # kernel.core_pattern and the like are host-global; read-only they stay the host's
        args += ["--ro-bind", "/proc/sys", "/proc/sys"]
        if self.host_sys:
            args += ["--ro-bind", "/sys", "/sys"]
        for path in self.tmpfs:
            args += ["--tmpfs", path]
        for bind in self.binds:
            args += ["--ro-bind" if bind.readonly else "--bind", str(bind.source), bind.dest]
        for path in self.readonly_paths:
            args += ["--remount-ro", path]
        args += ["--unshare-pid", "--unshare-ipc", "--unshare-uts", "--unshare-cgroup-try"]
        if not self.network:
            args += ["--unshare-net"]
        args += ["--cap-drop", "ALL"]  # (root keeps every capability in bwrap otherwise)
        for cap in self.capabilities:
            args += ["--cap-add", cap if cap == "ALL" else f"CAP_{cap.removeprefix('CAP_')}"]
        args += ["--die-with-parent", "--clearenv"]
        env = {"PATH": SANDBOX_PATH, "LC_ALL": "C.UTF-8", "LANG": "C.UTF-8", "HOME": "/root"}
        env.update(self.env)
        for key in sorted(env):
            args += ["--setenv", key, env[key]]
        args += ["--chdir", self.cwd, "--"]
        args += list(command)
        return args
