"""D-Bus method calls → the command a transaction runs, and the polkit action that guards it.

A transaction runs the same engine as the CLI, in a worker process: this module turns a method's
arguments and its ``options a{sv}`` into that command's argument list, checking every key and
type before anything is queued (an unknown option is an error, never ignored).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from apt_ostree.errors import UsageError
from apt_ostree.verbs import ALLOWED, AUTOMATIC_MODES, CLEANUP_ELEMENTS, DAEMON_OPTIONS, FLAGS, LISTS


@dataclass(frozen=True)
class Command:
    action: str  # the polkit action, without the org.projectatomic.aptostree1. prefix
    argv: tuple[str, ...]  # the apt-ostree command line (without --sysroot)
    no_queue: bool = False
    title: str = ""

    def with_title(self, options: Mapping[str, Any]) -> Command:
        title = options.get("initiating-command-line") or self.title or " ".join(self.argv)
        return Command(self.action, self.argv, bool(options.get("no-queue", False)), str(title))


def _strings(value: Any, key: str) -> list[str]:
    if not isinstance(value, list | tuple) or not all(isinstance(v, str) for v in value):
        raise UsageError(f"option {key!r} must be a list of strings (as)")
    return list(value)


def _options(verb: str, options: Mapping[str, Any], extra: Sequence[str] = ()) -> list[str]:
    """The CLI flags for ``options``; UsageError names an unknown key or a wrong type."""
    allowed = set(ALLOWED[verb]) | set(extra)
    argv: list[str] = []
    for key, value in options.items():
        if key in DAEMON_OPTIONS:
            if not isinstance(value, DAEMON_OPTIONS[key]):
                raise UsageError(f"option {key!r} has the wrong type")
            continue
        if key not in allowed:
            raise UsageError(f"unknown option {key!r} for {verb}",
                             hint=f"{verb} takes: {', '.join(sorted(allowed)) or 'no options'}")
        if key in FLAGS:
            if not isinstance(value, bool):
                raise UsageError(f"option {key!r} must be a boolean (b)")
            if value:
                argv.append(FLAGS[key])
        elif key in LISTS:
            for item in _strings(value, key):
                argv += [LISTS[key], item]
        elif key == "deploy-index":
            if not isinstance(value, int) or isinstance(value, bool):
                raise UsageError("option 'deploy-index' must be an integer (i)")
            argv += ["--deploy-index", str(value)]
    return argv


def _each(flag: str, items: Sequence[str]) -> list[str]:
    return [part for item in items for part in (flag, item)]


def _checked(items: Sequence[str], what: str) -> list[str]:
    for item in items:
        if not item or item.startswith("-"):
            raise UsageError(f"{what}: {item!r} is not a valid argument")
    return list(items)


def upgrade(options: Mapping[str, Any]) -> Command:
    return Command("upgrade", ("upgrade", *_options("upgrade", options)))


def deploy(revision: str, options: Mapping[str, Any]) -> Command:
    return Command("deploy", ("deploy", *_checked([revision], "revision"), *_options("deploy", options)))


def rebase(options: Mapping[str, Any], refspec: str, packages: Sequence[str]) -> Command:
    return Command("rebase", ("rebase", *_checked([refspec], "refspec"),
                              *_each("--install", _checked(packages, "package")), *_options("rebase", options)))


def rollback(options: Mapping[str, Any]) -> Command:
    return Command("rollback", ("rollback", *_options("rollback", options)))


def pkg_change(options: Mapping[str, Any], added: Sequence[str], removed: Sequence[str]) -> Command:
    added, removed = _checked(added, "package"), _checked(removed, "package")
    if added:
        argv = ["install", *added, *_each("--uninstall", removed)]
    elif removed:
        argv = ["uninstall", *removed]
    else:
        raise UsageError("PkgChange: no packages to add or remove")
    return Command("install-uninstall-packages", (*argv, *_options(argv[0], options)))


def update_deployment(modifiers: Mapping[str, Any], options_: Mapping[str, Any]) -> Command:
    """rpm-ostree's general method: the modifiers say which command it is. Without the option
    ``no-pull-base`` package modifiers ride on an upgrade (``upgrade --install``), with it they
    change only the packages (``install``), as in rpm-ostree."""
    known = {"set-refspec", "set-revision", "install-packages", "uninstall-packages", "uninstall-all",
             "override-remove-packages", "override-replace-local-packages", "override-reset-packages",
             "override-reset-all", "no-layering", "no-overrides"}
    for key in modifiers:
        if key not in known:
            raise UsageError(f"unknown modifier {key!r}", hint=f"modifiers: {', '.join(sorted(known))}")
    options = dict(options_)
    no_pull = options.pop("no-pull-base", False)
    if not isinstance(no_pull, bool):
        raise UsageError("option 'no-pull-base' must be a boolean (b)")
    lists = {k: _checked(_strings(v, k), k) for k, v in modifiers.items() if k.endswith("-packages")}
    flags = {}
    for k in ("uninstall-all", "override-reset-all", "no-layering", "no-overrides"):
        if k in modifiers:
            if not isinstance(modifiers[k], bool):
                raise UsageError(f"modifier {k!r} must be a boolean (b)")
            flags[k] = modifiers[k]
    for key in ("set-refspec", "set-revision"):
        if key in modifiers and not isinstance(modifiers[key], str):
            raise UsageError(f"modifier {key!r} must be a string (s)")
    install, uninstall = lists.get("install-packages", []), lists.get("uninstall-packages", [])
    remove = lists.get("override-remove-packages", [])
    replace = lists.get("override-replace-local-packages", [])
    reset = lists.get("override-reset-packages", [])
    overrides = bool(remove or replace or reset or flags.get("override-reset-all"))
    resets = bool(flags.get("no-layering") or flags.get("no-overrides"))
    packages = _each("--install", install) + _each("--uninstall", uninstall)
    if "set-refspec" in modifiers or "set-revision" in modifiers:
        if overrides or resets or flags.get("uninstall-all"):
            raise UsageError("set-refspec/set-revision combine only with install-packages/uninstall-packages")
        if "set-refspec" in modifiers and "set-revision" in modifiers:
            raise UsageError("give set-refspec or set-revision, not both")
        if "set-refspec" in modifiers:
            argv = ["rebase", *_checked([modifiers["set-refspec"]], "refspec"), *packages]
            return Command("rebase", (*argv, *_options("rebase", options)))
        argv = ["deploy", *_checked([modifiers["set-revision"]], "revision"), *packages]
        return Command("deploy", (*argv, *_options("deploy", options)))
    if resets:
        if install or uninstall or overrides or flags.get("uninstall-all"):
            raise UsageError("no-layering/no-overrides do not combine with other modifiers")
        argv = ["reset"]
        if not (flags.get("no-layering") and flags.get("no-overrides")):
            argv.append("--overlays" if flags.get("no-layering") else "--overrides")
        return Command("install-uninstall-packages" if flags.get("no-layering") else "override",
                       (*argv, *_options("reset", options)))
    if overrides:
        if install or uninstall or flags.get("uninstall-all"):
            raise UsageError("override modifiers do not combine with install/uninstall")
        if reset or flags.get("override-reset-all"):
            if remove or replace:
                raise UsageError("override-reset does not combine with override-remove/-replace")
            argv = ["override", "reset", *reset] + (["--all"] if flags.get("override-reset-all") else [])
        elif remove:
            argv = ["override", "remove", *remove, *_each("--replace", replace)]
        else:
            argv = ["override", "replace", *replace]
        return Command("override", (*argv, *_options("override", options)))
    if flags.get("uninstall-all"):
        argv = ["uninstall", "--all", *_each("--install", install)]
        return Command("install-uninstall-packages", (*argv, *_options("uninstall", options)))
    if no_pull:
        return pkg_change(options, install, uninstall)
    return Command("upgrade", ("upgrade", *packages, *_options("upgrade", options)))


def kernel_args(existing: str, added: Sequence[str], replaced: Sequence[str], deleted: Sequence[str],
                options: Mapping[str, Any], current: Callable[[], str]) -> Command:
    if existing and existing.split() != current().split():
        raise UsageError("the kernel arguments changed since they were read", hint="read them again and retry")
    argv = ["kargs", *_each("--append", _checked(added, "kernel argument")),
            *_each("--replace", _checked(replaced, "kernel argument")),
            *_each("--delete", _checked(deleted, "kernel argument")), *_options("kargs", options)]
    if len(argv) == 1:
        raise UsageError("KernelArgs: no kernel arguments to change")
    return Command("bootconfig", tuple(argv))


def cleanup(elements: Sequence[str]) -> Command:
    flags = []
    for element in elements:
        if element not in CLEANUP_ELEMENTS:
            raise UsageError(f"unknown cleanup element {element!r}",
                             hint=f"elements: {', '.join(CLEANUP_ELEMENTS)}")
        flags.append(CLEANUP_ELEMENTS[element])
    if not flags:
        raise UsageError("Cleanup: no elements given")
    return Command("cleanup", ("cleanup", *flags))


def refresh_md(options: Mapping[str, Any]) -> Command:
    return Command("repo-refresh", ("refresh-md", *_options("refresh-md", options)))


def finalize(options: Mapping[str, Any]) -> Command:
    checksum = options.get("checksum", "")
    if not isinstance(checksum, str):
        raise UsageError("option 'checksum' must be a string (s)")
    rest = {k: v for k, v in options.items() if k != "checksum"}
    if not checksum and not rest.get("allow-missing-checksum"):
        raise UsageError("FinalizeDeployment: give the staged deployment's checksum, or allow-missing-checksum")
    return Command("finalize-deployment",
                   ("finalize-deployment", *([checksum] if checksum else []), *_options("finalize-deployment", rest)))


def automatic(options: Mapping[str, Any], policy: str) -> Command | None:
    """AutomaticUpdateTrigger: None when the policy (or the ``mode`` option) is none."""
    mode = options.get("mode", "auto")
    if mode not in AUTOMATIC_MODES:
        raise UsageError(f"unknown mode {mode!r}", hint=f"modes: {', '.join(AUTOMATIC_MODES)}")
    for key in options:
        if key not in ("mode", *DAEMON_OPTIONS):
            raise UsageError(f"unknown option {key!r} for AutomaticUpdateTrigger")
    mode = policy if mode == "auto" else mode
    if mode == "none":
        return None
    argv = {"check": ("upgrade", "--check"), "stage": ("upgrade",), "apply": ("upgrade", "--reboot")}[mode]
    return Command("upgrade", argv, title=f"automatic update ({mode})")
