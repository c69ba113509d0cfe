"""The origin of a deployment: which base it follows and what is layered on it.

The origin file (``/ostree/deploy/OS/deploy/CSUM.N.origin``) uses rpm-ostree's
keys, so tools that read rpm-ostree origins understand ours:

    [origin]    refspec=REMOTE:REF          (no client-side changes)
                baserefspec=REMOTE:REF      (instead of refspec when something is layered)
                container-image-reference=ostree-unverified-registry:HOST/NAME:TAG
                                            (instead of either: the base is a bootable image)
    [packages]  requested=htop;vim;         (names or name=version)
                requested-local=SHA256:NAME;
    [overrides] remove=nano;
                replace-local=SHA256:NAME;
    [debconf]   selections=tzdata tzdata/Areas select Europe;   (apt-ostree's own: answers
                replayed with debconf-set-selections before the maintainer scripts run)
    [rpmostree] regenerate-initramfs=true     (dracut runs on the client, in the layered commit)
                initramfs-args=-I;/etc/x.conf;
                initramfs-etc=/etc/crypttab;  (an overlay initrd of these files, made at each deploy)

libostree's ``[origin] unlocked=hotfix`` is kept on the deployment it belongs to and dropped
from the origin of every new deployment (:meth:`Origin.for_new_deployment`).

An :class:`Origin` is the client-side half of a treefile: the base is a commit
instead of a package list, and ``requested`` is the treefile's ``packages``.
Names are validated with the treefile's rules before anything is changed.
"""

from __future__ import annotations

import posixpath
import re
from collections.abc import Iterable
from dataclasses import dataclass, field, replace

from gi.repository import GLib

from apt_ostree.core.imgref import OstreeImageRef
from apt_ostree.core.treefile import PACKAGE_RE
from apt_ostree.errors import UsageError

LOCAL_RE = re.compile(r"^[0-9a-f]{64}:[a-z0-9][a-z0-9+.-]+$")
# Keys of other groups are kept as they are (e.g. libostree's [origin] unlocked).
OWN_KEYS = {("origin", "refspec"), ("origin", "baserefspec"), ("origin", "container-image-reference"),
            ("packages", "requested"),
            ("packages", "requested-local"), ("overrides", "remove"), ("overrides", "replace-local"),
            ("debconf", "selections"), ("rpmostree", "regenerate-initramfs"), ("rpmostree", "initramfs-args"),
            ("rpmostree", "initramfs-etc")}
UNLOCKED_KEY = ("origin", "unlocked")
DEBCONF_TYPES = ("string", "password", "boolean", "select", "multiselect", "note", "text", "title", "error")


def check_package_name(name: str, what: str = "package") -> str:
    if not PACKAGE_RE.match(name):
        raise UsageError(f"not a Debian {what} name: {name!r}", hint="expected NAME or NAME=VERSION")
    return name


def check_debconf(line: str) -> str:
    """One debconf-set-selections line: OWNER QUESTION TYPE [VALUE]."""
    fields = line.split(None, 3)
    if len(fields) < 3 or "/" not in fields[1] or fields[2] not in DEBCONF_TYPES:
        raise UsageError(f"not a debconf answer: {line!r}",
                         hint="expected 'OWNER QUESTION TYPE VALUE', e.g. 'tzdata tzdata/Areas select Europe'")
    return " ".join(fields)


def check_initramfs_arg(arg: str) -> str:
    """One dracut argument (``-I``, ``/etc/x.conf``, ``--add=crypt``): no whitespace, nothing unprintable."""
    if not arg or not arg.isprintable() or any(c.isspace() for c in arg) or ";" in arg:
        raise UsageError(f"not a dracut argument: {arg!r}", hint="one argument per --arg, e.g. --arg=-I --arg=/etc/x")
    return arg


def check_etc_path(path: str) -> str:
    """A file tracked into the initramfs: an absolute, canonical path below /etc."""
    if (not path.startswith("/etc/") or posixpath.normpath(path) != path or not path.isprintable()
            or ";" in path):
        raise UsageError(f"not a canonical path below /etc: {path!r}", hint="initramfs-etc tracks files in /etc only")
    return path


def _uniq(items: Iterable[str]) -> tuple[str, ...]:
    return tuple(sorted(dict.fromkeys(items)))


@dataclass(frozen=True)
class LocalPackage:
    """A .deb given by path, remembered by content: ``SHA256:NAME``."""

    sha256: str
    name: str

    @classmethod
    def parse(cls, text: str) -> LocalPackage:
        if not LOCAL_RE.match(text):
            raise UsageError(f"not a local package reference: {text!r}", hint="expected SHA256:NAME")
        sha, name = text.split(":", 1)
        return cls(sha, name)

    def __str__(self) -> str:
        return f"{self.sha256}:{self.name}"


@dataclass(frozen=True)
class Origin:
    refspec: str
    requested: tuple[str, ...] = ()
    requested_local: tuple[LocalPackage, ...] = ()
    override_remove: tuple[str, ...] = ()
    override_replace_local: tuple[LocalPackage, ...] = ()
    debconf: tuple[str, ...] = ()
    regenerate_initramfs: bool = False
    initramfs_args: tuple[str, ...] = ()  # dracut arguments after the base's (with regenerate_initramfs)
    initramfs_etc: tuple[str, ...] = ()  # tracked /etc files: an overlay initrd
    container_image: str = ""  # the base is this image (an OstreeImageRef), refspec is then ""
    extra: tuple[tuple[str, str, str], ...] = field(default=(), compare=False)  # (group, key, value) kept verbatim

    def __post_init__(self) -> None:
        for name in (*self.requested, *self.override_remove):
            check_package_name(name)
        for line in self.debconf:
            check_debconf(line)
        for arg in self.initramfs_args:
            check_initramfs_arg(arg)
        for path in self.initramfs_etc:
            check_etc_path(path)
        if self.container_image:
            OstreeImageRef.parse(self.container_image)

    @property
    def source(self) -> str:
        """What the base follows: the image reference, else the refspec."""
        return self.container_image or self.refspec

    @property
    def layered(self) -> bool:
        """Does the deployment need a client-side commit (anything beyond the base)?"""
        return bool(self.requested or self.requested_local or self.override_remove or self.override_replace_local
                    or self.regenerate_initramfs)

    @property
    def packages_layered(self) -> bool:
        """Packages change (APT resolves), beyond a regenerated initramfs."""
        return bool(self.requested or self.requested_local or self.override_remove or self.override_replace_local)

    @property
    def unlocked(self) -> str | None:
        """libostree's ``[origin] unlocked`` (hotfix), if set."""
        return next((v for g, k, v in self.extra if (g, k) == UNLOCKED_KEY), None)

    def for_new_deployment(self) -> Origin:
        """The origin a new deployment gets: without libostree's unlock state of this one."""
        return replace(self, extra=tuple(e for e in self.extra if (e[0], e[1]) != UNLOCKED_KEY))

    @property
    def requested_names(self) -> tuple[str, ...]:
        return tuple(r.partition("=")[0] for r in self.requested)

    def with_changes(self, *, install: Iterable[str] = (), uninstall: Iterable[str] = (),
                     install_local: Iterable[LocalPackage] = (), remove: Iterable[str] = (),
                     reset: Iterable[str] = (), replace_local: Iterable[LocalPackage] = (),
                     refspec: str | None = None, container_image: str | None = None,
                     debconf: Iterable[str] = ()) -> Origin:
        """A new origin with requests added and removed (names compared without ``=version``);
        a new ``refspec`` or ``container_image`` replaces what the base follows."""
        gone = set(uninstall)
        requested = [r for r in self.requested if r.partition("=")[0] not in gone and r not in gone]
        for item in install:  # a new name=version replaces an older request for the same name
            name = item.partition("=")[0]
            requested = [r for r in requested if r.partition("=")[0] != name] + [item]
        local = [p for p in self.requested_local if p.name not in gone] + list(install_local)
        reset_set = set(reset)
        removals = [p for p in self.override_remove if p not in reset_set] + list(remove)
        replaced = [p for p in self.override_replace_local if p.name not in reset_set] + list(replace_local)
        answers = {tuple(a.split()[:2]): a for a in self.debconf}
        answers.update({tuple(a.split()[:2]): check_debconf(a) for a in debconf})
        if container_image:
            refspec = ""
        elif refspec:
            container_image = ""
        return replace(self, refspec=self.refspec if refspec is None else refspec,
                       container_image=self.container_image if container_image is None else container_image,
                       requested=_uniq(requested),
                       debconf=tuple(sorted(answers.values())),
                       requested_local=tuple(sorted(set(local), key=str)),
                       override_remove=_uniq(removals),
                       override_replace_local=tuple(sorted(set(replaced), key=str)))

    # ------------------------------------------------------------ keyfile
    @classmethod
    def from_keyfile(cls, keyfile: GLib.KeyFile) -> Origin:
        def get(group: str, key: str) -> str | None:
            try:
                return str(keyfile.get_string(group, key))
            except GLib.Error:
                return None

        def get_list(group: str, key: str) -> list[str]:
            value = get(group, key)
            return [v for v in (value or "").split(";") if v]

        image = get("origin", "container-image-reference") or ""
        refspec = "" if image else get("origin", "baserefspec") or get("origin", "refspec") or ""
        try:
            debconf = [str(x) for x in keyfile.get_string_list("debconf", "selections")]
        except GLib.Error:
            debconf = []
        regenerate = get("rpmostree", "regenerate-initramfs") == "true"
        extra = []
        for group in keyfile.get_groups()[0]:
            for key in keyfile.get_keys(group)[0]:
                if (group, key) not in OWN_KEYS:
                    extra.append((group, key, str(keyfile.get_value(group, key))))
        try:
            return cls(refspec=refspec,
                       requested=_uniq(get_list("packages", "requested")),
                       requested_local=tuple(LocalPackage.parse(v) for v in get_list("packages", "requested-local")),
                       override_remove=_uniq(get_list("overrides", "remove")),
                       override_replace_local=tuple(LocalPackage.parse(v)
                                                    for v in get_list("overrides", "replace-local")),
                       debconf=tuple(debconf), regenerate_initramfs=regenerate,
                       initramfs_args=tuple(get_list("rpmostree", "initramfs-args")),
                       initramfs_etc=_uniq(get_list("rpmostree", "initramfs-etc")), container_image=image,
                       extra=tuple(extra))
        except UsageError as e:
            raise UsageError(f"invalid origin file: {e.message}", hint=e.hint) from None

    def to_keyfile(self) -> GLib.KeyFile:
        kf = GLib.KeyFile()
        for group, key, value in self.extra:
            kf.set_value(group, key, value)
        if self.container_image:
            kf.set_string("origin", "container-image-reference", self.container_image)
        else:
            kf.set_string("origin", "baserefspec" if self.layered else "refspec", self.refspec)

        def put(group: str, key: str, values: Iterable[object]) -> None:
            items = [str(v) for v in values]
            if items:
                kf.set_string(group, key, "".join(f"{v};" for v in items))

        put("packages", "requested", self.requested)
        put("packages", "requested-local", self.requested_local)
        put("overrides", "remove", self.override_remove)
        put("overrides", "replace-local", self.override_replace_local)
        if self.debconf:
            kf.set_string_list("debconf", "selections", list(self.debconf))
        if self.regenerate_initramfs:
            kf.set_string("rpmostree", "regenerate-initramfs", "true")
            put("rpmostree", "initramfs-args", self.initramfs_args)
        put("rpmostree", "initramfs-etc", self.initramfs_etc)
        return kf

    def to_text(self) -> str:
        return str(self.to_keyfile().to_data()[0])
