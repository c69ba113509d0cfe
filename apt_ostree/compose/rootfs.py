"""Build a Debian root file system with mmdebstrap (APT's solver, signed sources).

The .deb download cache lives in ``cachedir/debs`` and is synced in and out of
the build so composes reuse it. dracut is diverted away while packages are
installed, so no initramfs is built by package hooks; compose builds exactly one
afterwards (see :mod:`apt_ostree.core.kernel`).
"""

from __future__ import annotations

import shlex
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from apt_ostree.core.apt import sources_list_text
from apt_ostree.core.sources import AptRepo
from apt_ostree.core.treefile import Treefile
from apt_ostree.errors import AptError, CommandError
from apt_ostree.progress import Progress
from apt_ostree.run import run

MMDEBSTRAP = "/usr/bin/mmdebstrap"
FILE_MIRROR_HOOKS = "/usr/share/mmdebstrap/hooks/file-mirror-automount"
DIVERTED = "/usr/bin/dracut"


@dataclass(frozen=True)
class RootfsPlan:
    """Everything mmdebstrap needs, derived from a treefile; pure data."""

    suite: str
    arch: str
    variant: str
    include: tuple[str, ...]
    local_debs: tuple[Path, ...]
    exclude: tuple[str, ...]
    recommends: bool
    repos: tuple[AptRepo, ...]
    aptopts: Mapping[str, str]
    cache_only: bool


def plan_rootfs(treefile: Treefile, repos: tuple[AptRepo, ...], arch: str, aptopts: Mapping[str, str],
                cache_only: bool) -> RootfsPlan:
    suite = treefile.releasever or repos[0].suites[0]
    return RootfsPlan(
        suite=suite,
        arch=arch,
        variant=treefile.variant,
        include=treefile.packages_for(arch),
        local_debs=treefile.packages_local,
        exclude=treefile.exclude_packages,
        recommends=treefile.recommends,
        repos=repos,
        aptopts=dict(aptopts),
        cache_only=cache_only,
    )


def _q(path: Path | str) -> str:
    return shlex.quote(str(path))


def exclude_pin(plan: RootfsPlan) -> str:
    """APT preferences that make the excluded packages uninstallable (rpm-ostree's exclude-packages)."""
    return "".join(f"Package: {p}\nPin: release *\nPin-Priority: -1\n\n" for p in plan.exclude)


def mmdebstrap_argv(plan: RootfsPlan, target: Path, sources: Path, cachedir: Path,
                    simulate: bool = False) -> list[str]:
    debs = cachedir / "debs"
    lists = cachedir / "apt" / "lists"
    argv = [MMDEBSTRAP, "--mode=root", "--format=directory", f"--variant={plan.variant}",
            f"--architectures={plan.arch}", "--skip=essential/unlink", "--skip=check/qemu"]
    if plan.include:
        argv.append("--include=" + ",".join(plan.include))
    for deb in plan.local_debs:
        argv.append(f"--include={deb}")
    # Makes local .debs and file:// repositories visible inside the chroot (a no-op otherwise).
    argv.append(f"--hook-dir={FILE_MIRROR_HOOKS}")
    opts = dict(plan.aptopts)
    opts["APT::Install-Recommends"] = "true" if plan.recommends else "false"
    if plan.cache_only:
        argv.append("--skip=update")
    for key, value in opts.items():
        argv.append(f'--aptopt={key} "{value}"')
    if simulate:
        argv += ["--simulate", "--verbose"]  # --verbose: apt-get's "Inst" lines
        if plan.exclude:  # hooks do not run when simulating: point APT at the pin directly
            argv.append(f'--aptopt=Dir::Etc::PreferencesParts "{sources.parent / "preferences.d"}"')
    else:
        argv += [
            "--setup-hook=mkdir -p \"$1\"/var/cache/apt/archives",
            f"--setup-hook=sync-in {_q(debs)} /var/cache/apt/archives/",
        ]
        if plan.exclude:
            argv.append("--setup-hook=mkdir -p \"$1\"/etc/apt/preferences.d && printf %s "
                        + _q(exclude_pin(plan)) + " > \"$1\"/etc/apt/preferences.d/apt-ostree-exclude")
        if plan.cache_only:
            argv += ["--setup-hook=mkdir -p \"$1\"/var/lib/apt/lists",
                     f"--setup-hook=sync-in {_q(lists)} /var/lib/apt/lists/"]
        # No initramfs from package hooks: compose builds one, once, afterwards.
        argv.append(f"--essential-hook=chroot \"$1\" dpkg-divert --quiet --local --rename --add {DIVERTED}")
        argv.append(f"--customize-hook=sync-out /var/cache/apt/archives {_q(debs)}")
        argv.append(f"--customize-hook=chroot \"$1\" dpkg-divert --quiet --local --rename --remove {DIVERTED}")
        if plan.exclude:
            argv.append("--customize-hook=rm -f \"$1\"/etc/apt/preferences.d/apt-ostree-exclude")
    argv += [plan.suite, str(target), str(sources)]
    return argv


def build_rootfs(plan: RootfsPlan, target: Path, workdir: Path, cachedir: Path, env: Mapping[str, str],
                 progress: Progress, simulate: bool = False) -> str:
    """Run mmdebstrap into ``target``; return its output when simulating."""
    (cachedir / "debs").mkdir(parents=True, exist_ok=True)
    sources = workdir / "apt-ostree.sources"  # deb822 (mmdebstrap goes by the extension)
    sources.write_text(sources_list_text(plan.repos))
    if simulate and plan.exclude:
        (workdir / "preferences.d").mkdir(exist_ok=True)
        (workdir / "preferences.d/apt-ostree-exclude.pref").write_text(exclude_pin(plan))
    argv = mmdebstrap_argv(plan, target, sources, cachedir, simulate)
    try:
        result = run(argv, env=env, progress=progress, capture=simulate, what="mmdebstrap")
    except CommandError as e:
        raise AptError(_explain(e), hint=e.hint) from None
    return result.stdout


def _explain(e: CommandError) -> str:
    """The telling line of a failed mmdebstrap run: a missing package, then an unmet dependency."""
    tail = (e.hint or "").splitlines()
    for line in tail:
        if "Unable to locate package" in line or "has no installation candidate" in line:
            return "package not available: " + line.removeprefix("E: ")
    for line in tail:
        if any(s in line for s in ("is not installable", "is not going to be installed", "but it is not")):
            return "package dependencies cannot be satisfied: " + " ".join(line.split())
    for line in tail:
        if line.startswith("E: ") and "mmdebstrap" not in line and "apt-get" not in line:
            return "package installation failed: " + line.removeprefix("E: ")
    return e.message
