"""Derived container images for the tests: a Containerfile ``FROM`` our image whose ``RUN`` is
``apt-ostree install PKG`` (container mode), built by buildah with chroot isolation (podman run does
not work on these machines: crun's setrlimit is refused) and pushed to an OCI layout."""

from __future__ import annotations

import subprocess
from pathlib import Path

ENV = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LC_ALL": "C.UTF-8"}
VAR_RUN = ("mkdir -m 0750 /var/lib/aot-state && echo kept > /var/lib/aot-state/file"  # (a derived layer's /var)
           " && chown 1:1 /var/lib/aot-state/file")


def buildah(work: Path, *args: str, cwd: Path | None = None) -> str:
    """buildah with its storage in ``work`` (nothing in the machine's /var/lib/containers)."""
    proc = subprocess.run(["buildah", "--root", str(work / "storage"), "--runroot", str(work / "run"), *args],
                          capture_output=True, text=True, env=ENV, cwd=cwd)
    if proc.returncode != 0:
        raise AssertionError(f"buildah {' '.join(args)} exited {proc.returncode}:\n{proc.stderr[-3000:]}")
    return proc.stdout


def build_derived(base: str, packages: list[str], dest: str, work: Path, remove: list[str] | None = None,
                  run: str | None = None) -> str:
    """``FROM base`` + ``RUN apt-ostree install PACKAGES`` (+ ``RUN apt-ostree uninstall REMOVE``, + ``RUN
    run``), pushed to ``dest`` (oci:DIR:TAG); the build log."""
    context = work / f"context-{'-'.join(packages)}"
    context.mkdir(parents=True, exist_ok=True)
    if base.startswith("oci:"):
        # FROM a relative path: buildah makes a name out of an absolute one, and a directory that
        # starts with "_" (_build) is no valid name ("invalid reference format")
        layout, _, tag = base.removeprefix("oci:").partition(":")
        link = context / "base-layout"
        link.unlink(missing_ok=True)
        link.symlink_to(Path(layout).resolve())
        base = f"oci:{link.name}:{tag}" if tag else f"oci:{link.name}"
    steps = f"FROM {base}\nRUN apt-ostree install {' '.join(packages)}\n"
    if remove:
        steps += f"RUN apt-ostree uninstall {' '.join(remove)}\n"
    if run:
        steps += f"RUN {run}\n"
    (context / "Containerfile").write_text(steps)
    tag = f"localhost/aot-derived:{'-'.join(packages)}"
    log = buildah(work, "bud", "--isolation", "chroot", "-t", tag, "-f", "Containerfile", ".", cwd=context)
    buildah(work, "push", tag, dest)
    return log
