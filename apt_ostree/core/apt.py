"""A small typed facade over APT: sources, index updates, package look-ups,
dpkg status parsing and Debian version comparison (python-apt's ``apt_pkg``).
"""

from __future__ import annotations

import hashlib
import re
import shutil
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import apt_pkg

from apt_ostree.core.sources import AptRepo, deb822_text, read_sources
from apt_ostree.errors import AptError, CommandError
from apt_ostree.progress import Progress
from apt_ostree.run import run

_initialised = False


def _init() -> None:
    global _initialised
    if not _initialised:
        apt_pkg.init_config()
        apt_pkg.init_system()
        _initialised = True


def host_architecture() -> str:
    _init()
    return str(apt_pkg.config.find("APT::Architecture"))


def host_architectures() -> list[str]:
    """The native architecture first, then the foreign ones APT is configured for."""
    _init()
    return list(apt_pkg.get_architectures())


def version_compare(a: str, b: str) -> int:
    _init()
    return int(apt_pkg.version_compare(a, b))


# ---------------------------------------------------------------- packages


@dataclass(frozen=True, order=True)
class Package:
    name: str
    version: str
    arch: str

    def __str__(self) -> str:
        return f"{self.name} {self.version} {self.arch}"


def parse_dpkg_status(text: str) -> list[Package]:
    """Installed packages (``install ok installed``) from a dpkg status file, sorted."""
    _init()
    packages = []
    for para in re.split(r"\n\s*\n", text):
        if not para.strip():
            continue
        section = apt_pkg.TagSection(para.strip("\n") + "\n")
        if section.get("Status", "").split()[-1:] != ["installed"]:
            continue
        packages.append(Package(section["Package"], section["Version"], section.get("Architecture", "all")))
    return sorted(packages)


# ---------------------------------------------------------------- sources


def tag_section(text: str) -> dict[str, str]:
    """The fields of one deb822 stanza, read by libapt (continuation lines kept as written)."""
    _init()
    section = apt_pkg.TagSection(text)
    return {k: section[k] for k in section.keys()}  # noqa: SIM118 (TagSection has no items())


def check_sources(etc_apt: Path) -> None:
    """Let libapt's own parser read ``etc_apt``'s sources files; AptError in APT's words on failure."""
    _init()
    cnf = apt_pkg.config
    saved = {k: cnf.find(k) for k in ("Dir::Etc::SourceList", "Dir::Etc::SourceParts")}
    cnf.set("Dir::Etc::SourceList", str(etc_apt / "sources.list"))
    cnf.set("Dir::Etc::SourceParts", str(etc_apt / "sources.list.d"))
    try:
        apt_pkg.SourceList().read_main_list()
    except SystemError as e:
        message = str(e).replace(", E:", "\nE:").splitlines()[0].removeprefix("E:").strip()
        raise AptError(f"APT cannot read the sources in {etc_apt}: {message}") from None
    finally:
        for k, v in saved.items():
            cnf.set(k, v)


def host_sources(root: Path = Path("/")) -> tuple[AptRepo, ...]:
    """The machine's own configured APT sources (``deb`` entries, every option kept)."""
    etc = root / "etc/apt"
    check_sources(etc)
    repos = read_sources(etc)
    if not repos:
        raise AptError(f"no APT sources configured in {etc}", hint="add a repos: list to the treefile")
    return tuple(repos)


def sources_list_text(repos: Iterable[AptRepo]) -> str:
    """The sources as a deb822 file (``.sources``): what APT and mmdebstrap are given."""
    return deb822_text(repos)


# Host APT options that concern *fetching* and so must also apply when we fetch
# the host's sources (e.g. a snapshot mirror without Valid-Until, a proxy).
FETCH_OPTIONS = ("Acquire::Check-Valid-Until", "Acquire::Check-Date", "Acquire::http::Proxy",
                 "Acquire::https::Proxy")


def host_fetch_options() -> dict[str, str]:
    _init()
    return {k: str(apt_pkg.config.find(k)) for k in FETCH_OPTIONS if k in apt_pkg.config}


# ---------------------------------------------------------------- index cache


class AptIndex:
    """Package indexes for a set of sources, kept in ``cachedir/apt``.

    ``update()`` runs ``apt-get update`` against only these sources;
    ``missing()`` tells which requested packages cannot be installed from them;
    ``release_digest()`` fingerprints the archive state (the InRelease files).
    """

    def __init__(self, cachedir: Path, repos: Sequence[AptRepo], arch: str) -> None:
        self.dir = cachedir.resolve() / "apt"
        self.repos = tuple(repos)
        self.arch = arch
        self.fetch_options = host_fetch_options()

    @property
    def lists(self) -> Path:
        return self.dir / "lists"

    def _write_config(self) -> Path:
        d = self.dir
        for sub in ("lists/partial", "cache", "etc/preferences.d", "etc/apt.conf.d", "etc/trusted.gpg.d"):
            (d / sub).mkdir(parents=True, exist_ok=True)
        (d / "etc/sources.list.d").mkdir(parents=True, exist_ok=True)
        (d / "etc/sources.list.d/apt-ostree.sources").write_text(sources_list_text(self.repos))
        (d / "etc/sources.list").unlink(missing_ok=True)
        (d / "status").touch()
        opts = {
            "Dir::State": str(d),
            "Dir::State::Lists": str(d / "lists"),
            "Dir::State::status": str(d / "status"),
            "Dir::Cache": str(d / "cache"),
            "Dir::Cache::pkgcache": "",
            "Dir::Cache::srcpkgcache": "",
            "Dir::Etc::SourceList": str(d / "etc/sources.list"),
            "Dir::Etc::SourceParts": str(d / "etc/sources.list.d"),
            "Dir::Etc::Preferences": str(d / "etc/preferences"),
            "Dir::Etc::PreferencesParts": str(d / "etc/preferences.d"),
            "Dir::Etc::Parts": str(d / "etc/apt.conf.d"),
            "APT::Architecture": self.arch,
            "APT::Architectures": self.arch,
            "Acquire::Languages": "none",
            **self.fetch_options,
        }
        conf = d / "apt.conf"
        conf.write_text("".join(f'{k} "{v}";\n' for k, v in opts.items()))
        return conf

    def update(self, progress: Progress) -> None:
        conf = self._write_config()
        try:
            result = run(["apt-get", "update", "-q", "-o", "APT::Update::Error-Mode=any"],
                         env={"APT_CONFIG": str(conf)}, progress=progress, what="apt-get update")
        except CommandError as e:
            raise AptError(_update_failure(e.hint or e.message), hint=e.hint) from None
        del result

    def has_lists(self) -> bool:
        return self.lists.is_dir() and any(self.lists.glob("*_Packages*"))

    def release_digest(self) -> str:
        h = hashlib.sha256()
        for f in sorted(self.lists.glob("*Release")):
            h.update(f.name.encode() + b"\0" + f.read_bytes())
        return h.hexdigest()

    def missing(self, names: Sequence[str]) -> list[str]:
        """The names (``pkg`` or ``pkg=version``) with no installable version in these sources."""
        conf = self._write_config()
        _init()
        for line in conf.read_text().splitlines():
            k, v = line.split(" ", 1)
            apt_pkg.config.set(k, v.strip().rstrip(";").strip('"'))
        apt_pkg.init_system()
        cache = apt_pkg.Cache(None)
        out = []
        for item in names:
            name, _, version = item.partition("=")
            if name not in cache:
                out.append(item)
                continue
            pkg = cache[name]
            versions = [v.ver_str for v in pkg.version_list]
            if (version and version not in versions) or (not versions and not pkg.has_provides):
                out.append(item)
        return out

    def clear(self) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)


def _update_failure(stderr: str) -> str:
    """One line from apt-get update's complaints, naming the source at fault."""
    lines = [ln.strip() for ln in stderr.splitlines() if ln.strip()]
    for pattern in ("is not signed", "NO_PUBKEY", "not signed", "BADSIG", "EXPKEYSIG"):
        for ln in lines:
            if pattern in ln:
                return "APT source is not signed by a trusted key: " + ln.removeprefix("E: ").removeprefix("W: ")
    for ln in lines:
        if ln.startswith(("E:", "W:", "Err:")):
            return "APT source unusable: " + ln.removeprefix("E: ").removeprefix("W: ")
    return "apt-get update failed: " + (lines[-1] if lines else "no output")
