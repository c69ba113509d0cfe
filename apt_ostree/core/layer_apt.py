"""APT for layering: a deployment's sources, the base commit's dpkg database, nothing of the host.

:class:`LayerApt` configures python-apt (``apt_pkg``, one global configuration
per process) from a deployment's ``/etc/apt`` with every state path moved to
apt-ostree's own directories: lists in ``/var/lib/apt-ostree``, .debs in
``/var/cache/apt-ostree``, the status file a copy of the base commit's.
Hooks that would run on the host (``DPkg::Pre-Invoke``, debconf's
``Pre-Install-Pkgs``...) are cleared. Resolution never changes a base package
implicitly; :meth:`LayerApt.install` drives the real dpkg through a wrapper that
runs it in the layering sandbox.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import shutil
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import apt_pkg

from apt_ostree.core import config
from apt_ostree.core.apt import check_sources, sources_list_text
from apt_ostree.core.apt_acquire import AcquireProgress
from apt_ostree.core.layer_dpkg import run_dpkg
from apt_ostree.core.plan import Plan, PlannedPackage
from apt_ostree.core.sources import AptRepo, read_sources
from apt_ostree.errors import AptError, LayeringError, UnknownPackage
from apt_ostree.progress import Progress

if TYPE_CHECKING:
    pass

log = logging.getLogger(__name__)

# Configuration that would make APT run things on the host or read the host's state.
HOST_HOOKS = ("DPkg::Pre-Invoke", "DPkg::Post-Invoke", "DPkg::Pre-Install-Pkgs", "DPkg::Post-Install-Pkgs",
              "APT::Update::Pre-Invoke", "APT::Update::Post-Invoke", "APT::Update::Post-Invoke-Success",
              "DPkg::Chroot-Directory", "DPkg::Tools", "APT::Periodic", "Binary")


# Debian policy 5.6.1, 5.6.12 and dpkg-architecture(1)'s names
PACKAGE_NAME = re.compile(r"[a-z0-9][a-z0-9+.-]+")
VERSION = re.compile(r"(?:[0-9]+:)?[A-Za-z0-9][A-Za-z0-9.+~-]*")
ARCHITECTURE = re.compile(r"[a-z0-9][a-z0-9-]*")


@dataclass(frozen=True)
class LocalDeb:
    path: Path
    name: str
    version: str
    arch: str
    sha256: str


def read_local_deb(path: Path) -> LocalDeb:
    """Name, version and content hash of a .deb file; AptError naming the file if it is not one."""
    import apt_inst

    try:
        control = apt_inst.DebFile(str(path)).control.extractdata("control").decode("utf-8", "replace")
        section = apt_pkg.TagSection(control)
        name, version = section["Package"], section["Version"]
        arch = section.get("Architecture", "all")
    except (OSError, SystemError, LookupError) as e:
        raise AptError(f"{path}: not a Debian package ({e})") from None
    for field, value, pattern in (("Package", name, PACKAGE_NAME), ("Version", version, VERSION),
                                  ("Architecture", arch, ARCHITECTURE)):
        if not pattern.fullmatch(value):  # (the name ends up in file names: never a path)
            raise AptError(f"{path}: invalid {field} field {value[:80]!r}",
                           hint="Debian policy 5.6: a package's name, version and architecture")
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return LocalDeb(path, name, version, arch, h.hexdigest())


def _packages_stanza(deb: LocalDeb, filename: str) -> str:
    import apt_inst

    control = apt_inst.DebFile(str(deb.path)).control.extractdata("control").decode("utf-8", "replace").rstrip("\n")
    return f"{control}\nFilename: {filename}\nSize: {deb.path.stat().st_size}\nSHA256: {deb.sha256}\n\n"


class LayerApt:
    def __init__(self, deploy_root: Path, state: Path, cache: Path, sources_name: str | None = None) -> None:
        self.deploy_root = deploy_root
        self.sources_name = sources_name or str(deploy_root / "etc/apt")  # what errors call the sources
        self.state = state  # .../var/lib/apt-ostree
        self.cache = cache  # .../var/cache/apt-ostree
        self.work = state / "work"
        self._cache: apt_pkg.Cache | None = None
        self._depcache: apt_pkg.DepCache | None = None

    @property
    def lists(self) -> Path:
        return self.state / "lists"

    @property
    def archives(self) -> Path:
        return self.cache / "archives"

    @property
    def local_dir(self) -> Path:
        """Local .debs requested by path, kept by hash so later re-layering finds them."""
        return self.cache / "local"

    # ------------------------------------------------------------ configuration
    def sources(self) -> tuple[AptRepo, ...]:
        """The deployment's sources, every form and option APT reads (libapt checks the files
        first): Signed-By keyrings and mirror+file: lists are its own files, and file: repositories
        are read with copy: (dpkg in the sandbox sees only the archives directory)."""
        etc = self.deploy_root / "etc/apt"
        check_sources(etc)
        out = []
        for r in read_sources(etc):
            signed = r.signed_by
            if signed is not None:
                signed = self._keyring(self.deploy_root / str(signed).lstrip("/"))
            out.append(r.with_changes(uris=tuple(self._uri(u) for u in r.uris), signed_by=signed))
        return tuple(out)

    def _uri(self, uri: str) -> str:
        if uri.startswith("file:"):
            return "copy:" + uri.removeprefix("file:")
        if uri.startswith("mirror+file:"):
            path = uri.removeprefix("mirror+file:")
            return f"mirror+file:{self.deploy_root / path.lstrip('/')}" if path.startswith("/") else uri
        return uri

    def _keyring(self, path: Path) -> Path:
        """A copy of a deployment's keyring at a stable path: every deployment has its own
        directory, and a sources.list that changes with it would invalidate APT's caches."""
        if not path.is_file():
            return path  # APT names the missing file
        dest = self.work / "keyrings" / (hashlib.sha256(str(path.relative_to(self.deploy_root)).encode())
                                         .hexdigest()[:16] + path.suffix)
        dest.parent.mkdir(parents=True, exist_ok=True)
        data = path.read_bytes()
        if not dest.exists() or dest.read_bytes() != data:
            dest.write_bytes(data)
        return dest

    def configure(self, status: Path | None = None, local: Sequence[LocalDeb] = ()) -> None:
        """Point apt_pkg at the deployment's configuration and our state directories."""
        for d in (self.lists / "partial", self.archives / "partial", self.work / "log", self.local_dir):
            d.mkdir(parents=True, exist_ok=True)
        # the deployment's sources, and ours: the local .debs (a new mtime invalidates APT's cache)
        (self.work / "sources.list.d").mkdir(parents=True, exist_ok=True)
        _write_if_changed(self.work / "sources.list.d/deployment.sources", sources_list_text(self.sources()))
        local_line = f"deb [trusted=yes] copy:{self._local_repo(local)} ./\n" if local else ""
        _write_if_changed(self.work / "sources.list", local_line)
        if status is None:
            status = self.work / "status"
            status.touch()
        etc = self.deploy_root / "etc/apt"
        cnf = apt_pkg.config
        cnf.clear("")
        cnf.set("Dir::Etc", str(etc) + "/")
        apt_pkg.init_config()
        for key in HOST_HOOKS:
            cnf.clear(key)
        settings = {
            "Dir::State": str(self.state),
            "Dir::State::Lists": str(self.lists),
            "Dir::State::status": str(status),
            "Dir::State::extended_states": str(self.work / "extended_states"),
            "Dir::Cache": str(self.cache),
            "Dir::Cache::archives": str(self.archives),
            # APT's binary caches, checked by APT against the lists and the status file
            "Dir::Cache::pkgcache": str(self.cache / "pkgcache.bin"),
            "Dir::Cache::srcpkgcache": str(self.cache / "srcpkgcache.bin"),
            "Dir::Etc::SourceList": str(self.work / "sources.list"),
            "Dir::Etc::SourceParts": str(self.work / "sources.list.d"),
            "Dir::Log": str(self.work / "log"),
            "Debug::NoLocking": "true",
            # downloads land in root-only directories (a sysroot under /var/tmp, tests)
            "APT::Sandbox::User": "root",
            "APT::Get::List-Cleanup": "false" if local else "true",
            "Acquire::Languages": "none",
            "Acquire::IndexTargets::deb::Contents-deb::DefaultEnabled": "false",
        }
        if not config.of_deployment(self.deploy_root).recommends:
            settings["APT::Install-Recommends"] = "false"  # apt-ostreed.conf's Recommends=false
        for key, value in settings.items():
            cnf.set(key, value)
        apt_pkg.init_system()
        self._cache = None

    def _local_repo(self, debs: Sequence[LocalDeb]) -> Path:
        """A flat repository of the local .debs (trusted: the admin named the files)."""
        repo = self.work / "local-repo"
        shutil.rmtree(repo, ignore_errors=True)
        repo.mkdir(parents=True)
        stanzas = []
        self.keep_local(debs)
        for deb in debs:
            kept = self.local_dir / f"{deb.sha256}.deb"
            os.link(kept, repo / f"{deb.name}_{deb.sha256[:12]}.deb")
            stanzas.append(_packages_stanza(LocalDeb(kept, deb.name, deb.version, deb.arch, deb.sha256),
                                            f"./{deb.name}_{deb.sha256[:12]}.deb"))
        (repo / "Packages").write_text("".join(stanzas))
        return repo

    def keep_local(self, debs: Sequence[LocalDeb]) -> None:
        """Copy local .debs into the stateroot's cache, named by hash (re-applied on upgrades)."""
        self.local_dir.mkdir(parents=True, exist_ok=True)
        for deb in debs:
            kept = self.local_dir / f"{deb.sha256}.deb"
            if not kept.exists():
                shutil.copyfile(deb.path, kept.with_suffix(".partial"))
                kept.with_suffix(".partial").rename(kept)

    def local_files(self) -> dict[Path, bytes | None]:
        """What keeping and indexing local .debs writes: the kept .debs and APT's copies (by name), the
        local package lists (with their content)."""
        found: dict[Path, bytes | None] = {p: None for d in (self.local_dir, self.archives) for p in d.glob("*.deb")}
        found.update({p: p.read_bytes() for p in self.lists.glob("*local-repo*")})
        return found

    def restore_local_files(self, before: dict[Path, bytes | None], debs: Sequence[LocalDeb]) -> None:
        """Back to ``before`` (from :meth:`local_files`) after a change with ``debs`` failed: the .debs
        it kept and APT's copies of them removed, the local package lists as they were."""
        if not debs:
            return
        kept = {f"{deb.sha256}.deb" for deb in debs}
        copies = tuple(f"{deb.name}_" for deb in debs)
        for p in [*self.local_dir.glob("*.deb"), *self.archives.glob("*.deb"), *self.lists.glob("*local-repo*")]:
            ours = p.name in kept if p.parent == self.local_dir else \
                p.name.startswith(copies) if p.parent == self.archives else True
            if p not in before and ours:
                p.unlink(missing_ok=True)
        for p, data in before.items():
            if data is not None and (not p.exists() or p.read_bytes() != data):
                p.with_suffix(".partial").write_bytes(data)
                p.with_suffix(".partial").rename(p)

    def local_deb(self, sha256: str, name: str) -> LocalDeb:
        path = self.local_dir / f"{sha256}.deb"
        if not path.exists():
            raise LayeringError(f"local package {name} ({sha256[:12]}) is no longer in {self.local_dir}",
                                hint=f"install the .deb again, or: apt-ostree uninstall {name}")
        deb = read_local_deb(path)
        return deb

    # ------------------------------------------------------------ indexes
    def has_lists(self) -> bool:
        return any(self.lists.glob("*_Packages*"))

    def refresh(self, progress: Progress, local_only: bool = False) -> None:
        """Download the package indexes (signatures verified); AptError names the bad source.
        ``local_only``: index only the local .debs (``-C``: no network)."""
        progress.step("Indexing local packages" if local_only else "Updating package lists")
        parts = apt_pkg.config.find("Dir::Etc::SourceParts")
        if local_only:  # sources.list holds only the local .debs
            (self.work / "no-parts").mkdir(exist_ok=True)
            apt_pkg.config.set("Dir::Etc::SourceParts", str(self.work / "no-parts"))
        try:
            sources = apt_pkg.SourceList()
            sources.read_main_list()
            cache = apt_pkg.Cache(None)
            acquire = AcquireProgress(progress)
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                ok = cache.update(acquire.as_apt(), sources, 500000)
            # as apt-get update: an index that cannot be fetched (an unreachable mirror) is a warning,
            # one line each, and the lists already there are used; a bad signature raised above
            for line in [*acquire.failed, *(ln for w in caught for ln in _apt_lines(str(w.message)))]:
                progress.message(f"warning: {line}")
            if not ok and not acquire.failed:
                raise AptError("cannot update the package lists", hint="check the network and /etc/apt/sources.list*")
        except SystemError as e:
            raise AptError(_source_failure(str(e))) from None
        finally:
            apt_pkg.config.set("Dir::Etc::SourceParts", parts)
        self._cache = None

    # ------------------------------------------------------------ resolution
    def _open(self) -> tuple[apt_pkg.Cache, apt_pkg.DepCache]:
        if self._cache is None:
            try:
                self._cache = apt_pkg.Cache(None)
            except SystemError as e:
                raise AptError(f"cannot read the package lists: {str(e).strip()}",
                               hint="apt-ostree refresh-md") from None
            self._depcache = apt_pkg.DepCache(self._cache)
        assert self._depcache is not None
        return self._cache, self._depcache

    def resolve(self, requested: Sequence[str], local: Sequence[LocalDeb], remove: Sequence[str],
                replace: Sequence[LocalDeb], *, allow_inactive: bool) -> Plan:
        cache, depcache = self._open()
        installed = [p for p in cache.packages if p.current_ver is not None]  # the one pass over the cache
        base = {p.name: p.current_ver.ver_str for p in installed}
        removals = []
        for name in remove:
            if name not in base:
                raise LayeringError(f"override remove {name}: not a package of the base",
                                    hint="only base packages can be removed; layered ones: apt-ostree uninstall")
            depcache.mark_delete(cache[name], True)
            removals.append(name)
        wanted: list[tuple[str, str | None]] = [(r.partition("=")[0], r.partition("=")[2] or None) for r in requested]
        wanted += [(d.name, d.version) for d in local]
        replaced = {d.name for d in replace}
        for d in replace:
            if d.name not in base:
                raise LayeringError(f"override replace {d.path}: {d.name} is not a package of the base",
                                    hint=f"to add it: apt-ostree install {d.path}")
            wanted.append((d.name, d.version))
        inactive = []
        targets = []
        for name, version in wanted:
            if name not in cache or not cache[name].version_list:
                raise UnknownPackage(name, f"unknown package {name!r}: no configured APT source has it",
                                     hint="check the name (apt-ostree search NAME) or refresh: apt-ostree refresh-md")
            pkg = cache[name]
            if name in base and name not in replaced:
                if version is None or version == base[name]:
                    if not allow_inactive:
                        raise LayeringError(f"package {name} is already in the base ({base[name]})",
                                            hint="pass --allow-inactive to request it anyway")
                    inactive.append(name)
                    continue
                raise LayeringError(f"{name}={version}: the base has {name} {base[name]}",
                                    hint=f"replacing a base package needs: apt-ostree override replace ./{name}.deb")
            if version is not None:
                match = next((v for v in pkg.version_list if v.ver_str == version), None)
                if match is None:
                    have = ", ".join(v.ver_str for v in pkg.version_list)
                    raise AptError(f"no version {version} of {name} (available: {have})")
                depcache.set_candidate_ver(pkg, match)
            targets.append(pkg)
        for pkg in targets:
            depcache.mark_install(pkg, True, True)
        resolver_said = ""
        if depcache.broken_count:
            fixer = apt_pkg.ProblemResolver(depcache)
            for pkg in targets:
                fixer.protect(pkg)
            for name in base:
                if name not in removals and name not in replaced:
                    fixer.protect(cache[name])
            try:
                fixer.resolve(True)
            except SystemError as e:  # what is left broken is named below, with APT's words as the fallback
                resolver_said = "; ".join(_apt_lines(str(e)))
        new = _marked_new(cache, depcache, targets, installed)
        self._check_base(depcache, base, installed, new, set(removals), replaced, targets, resolver_said)
        install = [self._planned(depcache, pkg) for pkg in new]
        repl: list[tuple[str, str, PlannedPackage]] = []
        gone: list[PlannedPackage] = []
        for pkg in installed:
            if pkg.name in replaced and (depcache.marked_upgrade(pkg) or depcache.marked_downgrade(pkg)
                                         or depcache.marked_reinstall(pkg)):
                repl.append((pkg.name, pkg.current_ver.ver_str, self._planned(depcache, pkg)))
            elif depcache.marked_delete(pkg):
                gone.append(PlannedPackage(pkg.name, pkg.current_ver.ver_str, pkg.current_ver.arch, 0))
        debs = tuple(sorted((d.name, d.sha256) for d in (*local, *replace)))
        return Plan(tuple(sorted(install, key=str)), tuple(sorted(repl, key=lambda r: r[0])),
                    tuple(sorted(gone, key=str)), tuple(sorted(inactive)), debs)

    @staticmethod
    def _planned(depcache: apt_pkg.DepCache, pkg: apt_pkg.Package) -> PlannedPackage:
        ver = depcache.get_candidate_ver(pkg)
        assert ver is not None
        return PlannedPackage(pkg.name, ver.ver_str, ver.arch, ver.size)

    @staticmethod
    def _check_base(depcache: apt_pkg.DepCache, base: dict[str, str], installed: Sequence[apt_pkg.Package],
                    new: Sequence[apt_pkg.Package], removals: set[str], replaced: set[str],
                    targets: Sequence[apt_pkg.Package], resolver_said: str = "") -> None:
        """Base packages change only when an override says so; otherwise name the culprit."""
        for pkg in installed:
            if pkg.name in removals or pkg.name in replaced:
                continue
            changed = depcache.marked_delete(pkg) or depcache.marked_upgrade(pkg) or depcache.marked_downgrade(pkg)
            if changed or depcache.is_inst_broken(pkg):
                verb = "remove" if depcache.marked_delete(pkg) or depcache.is_inst_broken(pkg) else "replace"
                culprit = _culprit(depcache, targets, pkg.name)
                raise LayeringError(
                    f"{culprit or 'the request'} would {verb} base package {pkg.name} {base[pkg.name]}",
                    hint=(f"allow it with: apt-ostree override remove {pkg.name}" if verb == "remove" else
                          f"allow it with: apt-ostree override replace ./{pkg.name}_VERSION.deb"))
        missing = [p for p in targets if not (depcache.marked_install(p) or depcache.marked_upgrade(p)
                                              or depcache.marked_downgrade(p) or depcache.marked_reinstall(p))]
        broken = [p for p in [*new, *installed] if depcache.marked_install(p) and depcache.is_inst_broken(p)]
        if missing or broken or depcache.broken_count:
            details = [d for p in [*missing, *broken] for d in _unmet(depcache, p)]
            names = ", ".join(p.name for p in [*missing, *broken][:5])
            raise LayeringError(f"cannot install {names or 'the requested packages'}: "
                                + ("; ".join(dict.fromkeys(details)) if details else
                                   resolver_said or "unresolvable dependencies"),
                                hint="a newer base may be needed (apt-ostree upgrade), or an override")

    def search(self, queries: Sequence[str]) -> list[tuple[str, str, str]]:
        """(name, version, summary) of packages whose name or summary contains every word
        (``name:GLOB`` matches names only)."""
        import fnmatch

        cache, depcache = self._open()
        candidates = {}
        for pkg in cache.packages:
            ver = depcache.get_candidate_ver(pkg)
            if ver is not None and ver.file_list:
                candidates[pkg.name] = ver.ver_str
        # Summaries come from reading the lists once, in order: looking each one up (PackageRecords)
        # seeks in compressed lists and took minutes for a word matched against every package.
        summaries: dict[str, str] = {}
        for path in sorted(self.lists.glob("*_Packages*")):
            with apt_pkg.TagFile(str(path)) as tags:
                for section in tags:
                    name = section.get("Package")
                    if name in candidates and section.get("Version") == candidates[name]:
                        summaries.setdefault(name, (section.get("Description") or "").split("\n")[0])
        found = []
        for name, version in candidates.items():
            summary = summaries.get(name, "")
            for q in queries:
                if q.startswith("name:"):
                    ok = fnmatch.fnmatch(name, q.removeprefix("name:"))
                else:
                    ok = q.lower() in name or q.lower() in summary.lower()
                if not ok:
                    break
            else:
                found.append((name, version, summary))
        return sorted(found)

    # ------------------------------------------------------------ download
    def download(self, progress: Progress) -> list[Path]:
        cache, depcache = self._open()
        fetcher = apt_pkg.Acquire(AcquireProgress(progress).as_apt())
        pm = apt_pkg.PackageManager(depcache)
        sources = apt_pkg.SourceList()
        sources.read_main_list()
        try:
            pm.get_archives(fetcher, sources, apt_pkg.PackageRecords(cache))
        except SystemError as e:
            raise AptError(f"cannot download packages: {str(e).strip()}") from None
        if fetcher.items:
            progress.step(f"Downloading {len(fetcher.items)} packages")
            result = fetcher.run()
            failed = [item for item in fetcher.items if item.status != item.STAT_DONE]
            if result != fetcher.RESULT_CONTINUE or failed:
                item = failed[0] if failed else None
                raise AptError(f"download failed: {item.desc_uri if item else ''} {item.error_text if item else ''}"
                               .strip(), hint="check the network, or apt-ostree refresh-md")
        self._pm = pm
        return [Path(item.destfile) for item in fetcher.items]

    # ------------------------------------------------------------ install
    def install(self, dpkg_wrapper: Path, log: Path, progress: Progress) -> None:
        """Run dpkg (through ``dpkg_wrapper``) in APT's order; LayeringError names the failing package."""
        run_dpkg(self._pm, self.cache, dpkg_wrapper, log, progress)


def _write_if_changed(path: Path, text: str) -> None:
    if not path.exists() or path.read_text() != text:
        path.write_text(text)


def _marked_new(cache: apt_pkg.Cache, depcache: apt_pkg.DepCache, targets: Sequence[apt_pkg.Package],
                installed: Sequence[apt_pkg.Package]) -> list[apt_pkg.Package]:
    """The packages marked for a new install, sorted by name. Found by walking the dependencies
    of what is marked (a few hundred packages instead of the archive's ~100,000) and checked
    against APT's own count of marked installs; a scan of the whole cache if they disagree."""
    def changed(pkg: apt_pkg.Package) -> bool:  # (marked_install is a new install only)
        return bool(depcache.marked_upgrade(pkg) or depcache.marked_downgrade(pkg) or depcache.marked_reinstall(pkg))

    changed_base = [p for p in installed if changed(p)]  # override replace
    stack = [*targets, *changed_base]
    seen: set[int] = set()
    found: list[apt_pkg.Package] = []
    while stack:
        pkg = stack.pop()
        if pkg.id in seen:
            continue
        seen.add(pkg.id)
        if pkg.current_ver is None and depcache.marked_install(pkg):
            found.append(pkg)
        elif pkg.current_ver is None or not changed(pkg):
            continue
        ver = depcache.get_candidate_ver(pkg)
        for groups in (ver.depends_list.values() if ver is not None else ()):
            for group in groups:
                for dep in group:
                    stack.append(dep.target_pkg)
                    stack.extend(v.parent_pkg for v in dep.all_targets())  # providers of virtual packages
    if len(found) + len(changed_base) != depcache.inst_count:
        log.debug("planner: the walk found %d of %d marked installs; scanning the cache",
                  len(found) + len(changed_base), depcache.inst_count)
        found = [p for p in cache.packages if p.current_ver is None and depcache.marked_install(p)]
    return sorted(found, key=lambda p: (p.name, p.architecture))


def _unmet(depcache: apt_pkg.DepCache, pkg: apt_pkg.Package) -> list[str]:
    """``PKG Depends DEP (>= V) (base has V0 / not available)`` for each unsatisfiable dependency."""
    # (the problem resolver may have dropped the candidate of a package it kept back)
    ver = depcache.get_candidate_ver(pkg) or (pkg.version_list[0] if pkg.version_list else None)
    out = []
    for kind in ("PreDepends", "Depends"):
        for group in (ver.depends_list.get(kind, []) if ver else []):
            if any(dep.all_targets() for dep in group):
                continue
            parts = []
            for dep in group:
                text = dep.target_pkg.name + (f" ({dep.comp_type} {dep.target_ver})" if dep.target_ver else "")
                current = dep.target_pkg.current_ver
                parts.append(text + (f", the base has {current.ver_str}" if current else ", not available"))
            out.append(f"{pkg.name} {kind} {' | '.join(parts)}")
    return out


def _culprit(depcache: apt_pkg.DepCache, targets: Sequence[apt_pkg.Package], base_name: str) -> str | None:
    for pkg in targets:
        ver = depcache.get_candidate_ver(pkg)
        if ver is None:
            continue
        for kind in ("Conflicts", "Breaks"):
            for group in ver.depends_list.get(kind, []):
                if any(d.target_pkg.name == base_name for d in group):
                    return f"{pkg.name} ({kind} {base_name})"
    return None


def _apt_lines(text: str) -> list[str]:
    """APT's messages (``W:...``, ``E:...``, joined by ", ") as lines without their prefix."""
    lines = text.replace(", W:", "\nW:").replace(", E:", "\nE:").splitlines()
    return [ln.strip().removeprefix("W:").removeprefix("E:").strip() for ln in lines if ln.strip()]


def _source_failure(text: str) -> str:
    lines = [ln.strip() for ln in text.replace(", E:", "\nE:").replace(", W:", "\nW:").splitlines() if ln.strip()]
    for pattern in ("NO_PUBKEY", "not signed", "is not signed", "BADSIG", "EXPKEYSIG"):
        for ln in lines:
            if pattern in ln:
                return "APT source is not signed by a trusted key: " + ln.removeprefix("E:").removeprefix("W:").strip()
    return "cannot update the package lists: " + (lines[0].removeprefix("E:").strip() if lines else text)
