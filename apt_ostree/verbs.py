"""The verb table: every command that runs a request (apt_ostree.core.ops), as data.

A row says what the verb is called, the request it makes, its options (flag, help, type, the
request field and the D-Bus key each one is sent as), the apt-ostreed method that runs it and the
polkit action that guards it, and what the CLI prints when nothing changed. From the rows come:
the argument parser (apt_ostree.cli.table), the D-Bus call the client makes (cli/client.py), the
request apt-ostreed makes of a call, with its option checks (daemon/requests.py), the interface's
transaction methods and the polkit actions (daemon/interface.py writes them into data/), the bash
completion and the man page's synopses (cli/surface.py). tests/unit/test_verbs.py holds them to it.

This module is a leaf: cli/ and daemon/ import it; it imports nothing of apt_ostree.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

# where an option travels in its D-Bus call
OPTIONS, MODIFIERS, ELEMENTS, ARG, CLI = "options", "modifiers", "elements", "arg", "cli"
SIGNATURES = {"bool": "b", "list": "as", "args": "as", "int": "i", "str": "s"}


@dataclass(frozen=True)
class Opt:
    """An option or a positional argument of a verb.

    ``names``: "-r --reboot" (a positional: its name, e.g. "packages"). ``into``: where the D-Bus
    call carries it: OPTIONS or MODIFIERS (an a{sv} key), ELEMENTS (Cleanup's as: the key when
    set), ARG (a method argument of its own, named by the row's ``call``), CLI (the CLI's own:
    no request field, not sent)."""

    names: str
    help: str = ""
    kind: str = "bool"  # bool | list | args (a list whose items may start with "-") | int | str
    into: str = OPTIONS
    key: str = ""  # its a{sv} key or element ("": the long name)
    field: str = ""  # the request field ("": the long name, - as _)
    metavar: str | None = None
    nargs: str | None = None  # a positional's: None (one), "?", "*", "+"
    paths: bool = False  # local .deb paths, made absolute by the CLI (apt-ostreed has another cwd)
    hidden: bool = False  # accepted, not shown in --help

    @property
    def flags(self) -> tuple[str, ...]:
        return tuple(n for n in self.names.split() if n.startswith("-"))

    @property
    def positional(self) -> bool:
        return not self.flags

    @property
    def long(self) -> str:
        return self.names.split()[-1].lstrip("-")

    @property
    def dest(self) -> str:
        return self.field or self.long.replace("-", "_")

    @property
    def dbus_key(self) -> str:
        return self.key or self.long


@dataclass(frozen=True)
class Verb:
    """A command that makes a request: its row."""

    path: str  # "upgrade", "override remove"
    help: str
    request: str  # its class in apt_ostree.core.ops
    opts: tuple[Opt, ...]
    method: str = ""  # the apt-ostreed OS method that runs it ("": in-process only: search, usroverlay)
    action: str = ""  # its polkit action, without the org.projectatomic.aptostree1. prefix
    call: tuple[str, ...] = (OPTIONS,)  # the method's in-arguments: OPTIONS, MODIFIERS, ELEMENTS or a field
    send: tuple[tuple[str, str, Any], ...] = ()  # (into, key, value) every call of the verb carries
    aliases: tuple[str, ...] = ()
    unchanged: str = ""  # printed when nothing changed (exit 77 with --unchanged-exit-77)
    done: str = ""  # printed when it did its work, before the package diff and the new deployment
    extra: tuple[tuple[str, str], ...] = ()  # (field, kind) method arguments no flag sets

    @property
    def name(self) -> str:
        return self.path.split()[0]

    @property
    def changes(self) -> bool:
        return bool(self.method)

    def opt(self, dest: str) -> Opt | None:
        return next((o for o in self.opts if o.dest == dest), None)

    def kind(self, dest: str) -> str:
        o = self.opt(dest)
        return o.kind if o is not None else dict(self.extra)[dest]

    def arg_signature(self, arg: str) -> str:
        """The D-Bus type of the method argument ``arg`` (an entry of ``call``)."""
        return {OPTIONS: "a{sv}", MODIFIERS: "a{sv}", ELEMENTS: "as"}.get(arg) or SIGNATURES[self.kind(arg)]

    def signature(self) -> str:
        return "".join(self.arg_signature(a) for a in self.call)


def _o(names: str, help: str = "", **kw: Any) -> Opt:
    return Opt(names, help, **kw)


_REBOOT = _o("-r --reboot", "reboot into the new deployment")
_CACHE = _o("-C --cache-only", "do not pull; use the local repository")
_LOCK = _o("--lock-finalization", "the staged deployment is finalized only by finalize-deployment")
_EXIT77 = _o("--unchanged-exit-77", "exit 77 when nothing changed")
_DEPLOYING = (_CACHE, _REBOOT, _LOCK, _EXIT77)
_ALSO = (_o("--install", "also layer PACKAGE on the new deployment", kind="list", key="install-packages",
            metavar="PACKAGE", paths=True),
         _o("--uninstall", "also remove the layered PACKAGE", kind="list", key="uninstall-packages",
            metavar="PACKAGE"))
_LAYER = (_o("-n --dry-run", "show the transaction; change nothing"),
          _o("-y --assumeyes", "do not ask (accepted; apt-ostree never asks)", into=CLI),
          _o("-C --cache-only", "do not refresh the package lists"),
          _o("--download-only", "download the packages; deploy nothing"), _LOCK, _EXIT77, _REBOOT)
_RESTART = _o("--restart-services", "restart the running services whose unit or program the change touched "
              "(in their dependency order)")
_LIVE = (_o("-A --apply-live", "also apply the new deployment to the running system (no reboot)"),
         _o("--allow-replacement", "with -A: allow changing and removing packages of the running system"),
         _RESTART)
_NO_PULL = ((OPTIONS, "no-pull-base", True),)
_PKG: dict[str, Any] = dict(method="PkgChange", action="install-uninstall-packages",
                            call=(OPTIONS, "install", "uninstall"), unchanged="No change.")
_OVERRIDE: dict[str, Any] = dict(method="UpdateDeployment", action="override", call=(MODIFIERS, OPTIONS),
                                 send=_NO_PULL, unchanged="No change.")

VERBS: tuple[Verb, ...] = (
    Verb("upgrade", "pull the origin's newest commit and deploy it", "Upgrade", (
        _o("--check", "only tell whether an upgrade is available"),
        _o("--preview", "show the package changes of the upgrade; deploy nothing"),
        _o("--download-only", "pull the upgrade; deploy nothing"),
        _o("--trigger-automatic-update-policy",
           "do what AutomaticUpdatePolicy in apt-ostreed.conf says (the automatic timer)", into=CLI),
        *_DEPLOYING, _o("--allow-downgrade", "allow an older commit"), *_ALSO),
        method="Upgrade", action="upgrade", unchanged="No upgrade available."),
    Verb("deploy", "deploy a specific commit of the origin", "Deploy", (
        _o("revision", "commit checksum or version=VERSION", kind="str", into=ARG, metavar="REVISION"),
        *_DEPLOYING, *_ALSO),
        method="Deploy", action="deploy", call=("revision", OPTIONS), unchanged="Already deployed: {result.checksum}"),
    Verb("rebase", "switch to another ref (REMOTE:REF or REF) or bootable container image "
         "(ostree-unverified-registry:HOST/NAME:TAG, ostree-unverified-image:oci:DIR), keeping /etc changes",
         "Rebase", (
        _o("refspec", kind="str", into=ARG, metavar="REFSPEC"),
        _o("--preview", "pull the new base and resolve the layered packages on it; show the changes, deploy nothing"),
        *_DEPLOYING, replace(_ALSO[0], into=ARG), _ALSO[1]),
        method="Rebase", action="rebase", call=(OPTIONS, "refspec", "install"),
        unchanged="Already on {op.refspec}: {result.checksum}"),
    Verb("rollback", "make the previous deployment the default", "Rollback", (
        _o("-r --reboot", "reboot afterwards"),), method="Rollback", action="rollback"),
    Verb("cleanup", "remove pending or rollback deployments; prune the repository", "Cleanup", (
        _o("-p --pending", "remove the pending deployment", into=ELEMENTS, key="pending-deploy"),
        _o("-r --rollback", "remove the rollback deployment", into=ELEMENTS, key="rollback-deploy"),
        _o("-b --base", "clean up temporary files and prune the repository", into=ELEMENTS, key="base")),
        method="Cleanup", action="cleanup", call=(ELEMENTS,), unchanged="No deployments removed."),
    Verb("kargs", "show or change the kernel arguments (a new deployment)", "Kargs", (
        _o("--append", "add KEY=VALUE", kind="list", into=ARG, metavar="KARG"),
        _o("--append-if-missing", "add unless present", kind="list", metavar="KARG"),
        _o("--delete", "remove (error if absent)", kind="list", into=ARG, metavar="KARG"),
        _o("--delete-if-present", "remove if present", kind="list", metavar="KARG"),
        _o("--replace", "KEY=VALUE or KEY=OLD=NEW", kind="list", into=ARG, metavar="KARG"),
        _o("--editor", "edit the arguments in $EDITOR", into=CLI),
        _o("--deploy-index", "start from deployment N's arguments (default: the pending one's, else the booted one's)",
           kind="int", metavar="N"),
        _o("--import-proc-cmdline", "start from /proc/cmdline"), _EXIT77, _LOCK, _REBOOT),
        method="KernelArgs", action="bootconfig", call=("existing", "append", "replace", "delete", OPTIONS),
        extra=(("existing", "str"),), unchanged="Kernel arguments unchanged.", done="Kernel arguments updated."),
    Verb("finalize-deployment", "unlock a finalization-locked staged deployment and reboot", "FinalizeDeployment", (
        _o("checksum", "the staged deployment's commit (or a prefix)", kind="str", metavar="CHECKSUM", nargs="?"),
        _o("--allow-missing-checksum", "finalize whatever is staged when no CHECKSUM is given")),
        method="FinalizeDeployment", action="finalize-deployment",
        done="Finalizing {result.finalized} and rebooting."),
    Verb("install", "layer packages (names, NAME=VERSION or ./file.deb) on a new deployment", "PackageChange", (
        _o("packages", kind="list", into=ARG, field="install", metavar="PACKAGE", nargs="+", paths=True),
        _o("--uninstall", "also uninstall PACKAGE", kind="list", into=ARG, metavar="PACKAGE"),
        _o("--idempotent", "no error for packages already requested", key="idempotent-layering"),
        _o("--allow-inactive", "allow requests for packages of the base", key="allow-inactive-requests"),
        _o("--debconf", "answer a debconf question (kept in the origin, replayed on every rebuild)", kind="list",
           metavar="'OWNER QUESTION TYPE VALUE'"), *_LAYER, *_LIVE), **_PKG),
    Verb("uninstall", "remove layered packages (a new deployment)", "PackageChange", (
        _o("packages", kind="list", into=ARG, field="uninstall", metavar="PACKAGE", nargs="*"),
        _o("--all", "remove every layered package", key="uninstall-all", field="uninstall_all"),
        _o("--install", "also install PACKAGE", kind="list", into=ARG, metavar="PACKAGE", paths=True),
        _o("--idempotent", "no error for packages that are not layered", key="idempotent-layering"),
        _o("--allow-inactive", key="allow-inactive-requests", hidden=True), *_LAYER, *_LIVE), aliases=("remove",),
        **_PKG),
    Verb("override remove", "remove base packages from the deployment", "PackageChange", (
        _o("packages", kind="list", into=MODIFIERS, key="override-remove-packages", field="override_remove",
           metavar="PACKAGE", nargs="+"),
        _o("--replace", "also replace with ./x.deb", kind="list", into=MODIFIERS, field="override_replace",
           key="override-replace-local-packages", metavar="DEB", paths=True), *_LAYER), **_OVERRIDE),
    Verb("override replace", "replace base packages with local .deb files", "PackageChange", (
        _o("packages", kind="list", into=MODIFIERS, key="override-replace-local-packages", field="override_replace",
           metavar="DEB", nargs="+", paths=True),
        _o("--remove", "also remove PACKAGE", kind="list", into=MODIFIERS, field="override_remove",
           key="override-remove-packages", metavar="PACKAGE"), *_LAYER), **_OVERRIDE),
    Verb("override reset", "drop overrides (the base's package again)", "PackageChange", (
        _o("packages", kind="list", into=MODIFIERS, key="override-reset-packages", field="override_reset",
           metavar="PACKAGE", nargs="*"),
        _o("-a --all", "drop every override", into=MODIFIERS, key="override-reset-all", field="override_reset_all"),
        *_LAYER), **_OVERRIDE),
    Verb("reset", "remove layered packages and overrides: the pure base again", "PackageChange", (
        _o("-l --overlays", "remove only the layered packages", into=MODIFIERS, key="no-layering",
           field="reset_layers"),
        _o("-o --overrides", "remove only the overrides", into=MODIFIERS, key="no-overrides",
           field="override_reset_all"),
        _o("-i --initramfs", "stop regenerating the initramfs and tracking /etc files in it", into=MODIFIERS,
           key="no-initramfs", field="reset_initramfs"), *_LAYER),
        **{**_OVERRIDE, "action": "install-uninstall-packages"}),
    Verb("initramfs", "regenerate the initramfs on this system with its dracut (or show whether it is)", "Initramfs", (
        _o("--enable", "regenerate it now and in every later deployment, with this system's /etc", into=ARG,
           field="regenerate"),
        _o("--disable", "the base's initramfs again", into=CLI),
        _o("--arg", "a dracut argument (repeatable; with --enable), e.g. --arg=-I --arg=/etc/x.conf", kind="args",
           into=ARG, field="args", metavar="ARG"), _LOCK, _EXIT77, _REBOOT),
        method="SetInitramfsState", action="bootconfig", call=("regenerate", "args", OPTIONS),
        unchanged="Initramfs regeneration is already {op.state}.", done="Initramfs regeneration is now: {op.state}"),
    Verb("initramfs-etc", "carry files of /etc into the initramfs (an overlay initrd made at each deployment)",
         "InitramfsEtc", (
             _o("--track", "track FILE (below /etc)", kind="list", into=ARG, metavar="FILE"),
             _o("--untrack", "stop tracking FILE", kind="list", into=ARG, metavar="FILE"),
             _o("--untrack-all", "stop tracking every file", into=ARG, field="untrack_all"),
             _o("--force-sync", "a new deployment with the tracked files as they are now", into=ARG,
                field="force_sync"), _LOCK, _EXIT77, _REBOOT),
         method="InitramfsEtc", action="bootconfig", call=("track", "untrack", "untrack_all", "force_sync", OPTIONS),
         unchanged="No changes."),
    Verb("usroverlay", "make /usr writable: an overlay lost at the reboot (libostree's unlock)", "Usroverlay", (
        _o("--hotfix", "keep the changes across reboots (the deployment before them stays as the rollback)"),
        _o("--transient", "the overlay read-only (writable only in a private mount namespace)")),
        done="Unlocked: {result.unlocked}. {op.notice}"),
    Verb("apply-live", "apply the pending deployment (or a commit) to the running system, without a reboot",
         "ApplyLive", (
             _o("--target", "apply this commit instead of the pending deployment", kind="str", metavar="REV"),
             _o("--reset", "make the running /usr the booted commit's again"),
             _o("--allow-replacement", "allow changing and removing packages (default: additions only)",
                key="replace"), _RESTART),
         method="LiveFs", action="apply-live",
         unchanged="No changes to apply: the running system is {result.checksum}."),
    Verb("refresh-md", "download the package lists layering uses", "RefreshMd", (
        _o("-f --force", "download even if the lists are current"),),
        method="RefreshMd", action="repo-refresh", done="Package lists updated."),
    Verb("search", "search the packages available for layering", "Search", (
        _o("queries", "words in the name or summary; name:GLOB for names", kind="list", into=ARG, metavar="QUERY",
           nargs="+"),
        _o("-C --cache-only", "do not refresh the package lists"),
        _o("--json", "a JSON list of {name, version, summary}", into=CLI))),
)

# verb groups: the parent of "override remove" and its siblings
GROUPS = {"override": "remove or replace packages of the base"}
# polkit actions: (description, message); every row's action is one of them
ACTIONS = {
    "install-uninstall-packages": ("Install and remove packages",
                                   "Authentication is required to install and remove software"),
    "override": ("Override base packages", "Authentication is required to override base OS software"),
    "deploy": ("Update base OS", "Authentication is required to update software"),
    "upgrade": ("Update base OS", "Authentication is required to update software"),
    "rebase": ("Switch to a different base OS", "Authentication is required to switch to a different base OS"),
    "rollback": ("Rollback OS updates", "Authentication is required to roll back software updates"),
    "bootconfig": ("Change boot configuration", "Authentication is required to change the boot configuration"),
    "cleanup": ("Clear cache and pending updates", "Authentication is required to clean up system data"),
    "apply-live": ("Apply changes to the running system",
                   "Authentication is required to change the running system"),
    "repo-refresh": ("Refresh package metadata", "Authentication is required to refresh the package lists"),
    "cancel": ("Cancel a transaction", "Authentication is required to cancel a transaction"),
    "reload-daemon": ("Reload the daemon state", "Authentication is required to reload the daemon"),
    "finalize-deployment": ("Finalize a staged deployment",
                            "Authentication is required to finalize the deployment and reboot"),
}

# options every method takes: handled by apt-ostreed, not passed on
DAEMON_OPTIONS = {"no-queue": bool, "initiating-command-line": str}
AUTOMATIC_MODES = ("auto", "none", "check", "stage", "apply")
# methods that start a transaction without a row: the automatic update timer's
OTHER_TRANSACTION_METHODS = ("AutomaticUpdateTrigger",)

BY_PATH = {v.path: v for v in VERBS}


def by_method(method: str) -> tuple[Verb, ...]:
    """The rows whose calls use ``method`` (they agree on its arguments: tests/unit/test_verbs.py)."""
    return tuple(v for v in VERBS if v.method == method)


def methods() -> dict[str, Verb]:
    """Each transaction method and the first row that uses it."""
    return {v.method: v for v in reversed(VERBS) if v.method}


def options_position(method: str) -> int:
    """The position of the method's options a{sv} (-1: it has none)."""
    if method in OTHER_TRANSACTION_METHODS:
        return 0
    call = methods()[method].call
    return call.index(OPTIONS) if OPTIONS in call else -1
