"""What a layered commit changes relative to its base: the resolver's plan, as plain data
(no python-apt here: the CLI renders plans that came back from apt-ostreed)."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field


@dataclass(frozen=True)
class PlannedPackage:
    name: str
    version: str
    arch: str
    size: int  # download size in bytes

    def __str__(self) -> str:
        return f"{self.name} {self.version} {self.arch}"


@dataclass(frozen=True)
class Plan:
    """What a layered commit changes relative to its base."""

    install: tuple[PlannedPackage, ...] = ()  # new packages (requested and their dependencies)
    replace: tuple[tuple[str, str, PlannedPackage], ...] = ()  # (name, base version, new) for override replace
    remove: tuple[PlannedPackage, ...] = ()  # base packages removed by override remove
    inactive: tuple[str, ...] = ()  # requests already satisfied by the base
    debs: tuple[tuple[str, str], ...] = field(default=(), compare=False)  # (name, sha256) of every .deb used

    @property
    def download_size(self) -> int:
        return sum(p.size for p in self.install) + sum(p.size for _, _, p in self.replace)

    @property
    def empty(self) -> bool:
        return not (self.install or self.replace or self.remove)

    def fingerprint(self, base: str, debconf: Sequence[str] = (), initramfs: Sequence[str] | None = None) -> str:
        """Same base + same resolved packages (+ same debconf answers, same initramfs arguments)
        = same layered tree."""
        h = hashlib.sha256(base.encode())
        for line in debconf:
            h.update(f"?{line}\n".encode())
        if initramfs is not None:
            h.update(f"!initramfs {' '.join(initramfs)}\n".encode())
        for p in self.install:
            h.update(f"+{p}\n".encode())
        for name, old, p in self.replace:
            h.update(f"~{name} {old} {p}\n".encode())
        for p in self.remove:
            h.update(f"-{p}\n".encode())
        for name, sha in self.debs:
            h.update(f"@{name} {sha}\n".encode())
        return h.hexdigest()
