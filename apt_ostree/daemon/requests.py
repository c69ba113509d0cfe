"""D-Bus method calls → the typed request a transaction runs, and the polkit action that guards it.

A transaction runs the same engine as the CLI, in a worker process: this module turns a method's
arguments and its ``options a{sv}`` into the request (apt_ostree.core.ops) the CLI makes for the
same command, checking every key and type before anything is queued (an unknown option is an
error, never ignored).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from apt_ostree.core import ops
from apt_ostree.core.ops import Request
from apt_ostree.errors import UsageError
from apt_ostree.verbs import (
    ALLOWED,
    AUTOMATIC_MODES,
    CLEANUP_ELEMENTS,
    DAEMON_OPTIONS,
    FLAGS,
    LISTS,
    TRANSACTION_METHODS,
    field_name,
)


@dataclass(frozen=True)
class Command:
    action: str  # the polkit action, without the org.projectatomic.aptostree1. prefix
    op: ops.Op  # what the worker runs
    title: str  # what it is called (rpm-ostree's transaction title)
    no_queue: bool = False

    def with_title(self, options: Mapping[str, Any]) -> Command:
        title = options.get("initiating-command-line") or self.title
        return Command(self.action, self.op, str(title), bool(options.get("no-queue", False)))


def _strings(value: Any, key: str) -> list[str]:
    if not isinstance(value, list | tuple) or not all(isinstance(v, str) for v in value):
        raise UsageError(f"option {key!r} must be a list of strings (as)")
    return list(value)


def _options(verb: str, options: Mapping[str, Any], extra: Sequence[str] = ()) -> dict[str, Any]:
    """The request's fields for ``options``; UsageError names an unknown key or a wrong type."""
    allowed = set(ALLOWED[verb]) | set(extra)
    fields: dict[str, Any] = {}
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
            fields[field_name(key)] = value
        elif key in LISTS:
            fields[field_name(key)] = tuple(_checked(_strings(value, key), key))
        elif key == "deploy-index":
            if not isinstance(value, int) or isinstance(value, bool):
                raise UsageError("option 'deploy-index' must be an integer (i)")
            fields["deploy_index"] = value
    return fields


def _checked(items: Sequence[str], what: str) -> list[str]:
    for item in items:
        if not item or item.startswith("-"):
            raise UsageError(f"{what}: {item!r} is not a valid argument")
    return list(items)


def _title(*words: str | Sequence[str]) -> str:
    return " ".join(w if isinstance(w, str) else " ".join(w) for w in words if w)


def upgrade(options: Mapping[str, Any], install: Sequence[str] = (), uninstall: Sequence[str] = ()) -> Command:
    op = ops.Upgrade(**_options("upgrade", options), install=tuple(_checked(install, "package")),
                     uninstall=tuple(_checked(uninstall, "package")))
    return Command("upgrade", op, _title("upgrade", install))


def deploy(revision: str, options: Mapping[str, Any], install: Sequence[str] = (),
           uninstall: Sequence[str] = ()) -> Command:
    op = ops.Deploy(_checked([revision], "revision")[0], **_options("deploy", options),
                    install=tuple(_checked(install, "package")), uninstall=tuple(_checked(uninstall, "package")))
    return Command("deploy", op, _title("deploy", revision))


def rebase(options: Mapping[str, Any], refspec: str, install: Sequence[str],
           uninstall: Sequence[str] = ()) -> Command:
    op = ops.Rebase(_checked([refspec], "refspec")[0], **_options("rebase", options),
                    install=tuple(_checked(install, "package")), uninstall=tuple(_checked(uninstall, "package")))
    return Command("rebase", op, _title("rebase", refspec))


def rollback(options: Mapping[str, Any]) -> Command:
    return Command("rollback", ops.Rollback(**_options("rollback", options)), "rollback")


def _layer(verb: str, options: Mapping[str, Any], **request: Any) -> ops.PackageChange:
    fields = _options(verb, options)
    request.update({k: fields.pop(k) for k in ("idempotent", "debconf") if k in fields})
    return ops.PackageChange(Request(**request), **fields)


def pkg_change(options: Mapping[str, Any], added: Sequence[str], removed: Sequence[str]) -> Command:
    added, removed = _checked(added, "package"), _checked(removed, "package")
    if not added and not removed:
        raise UsageError("PkgChange: no packages to add or remove")
    op = _layer("install", options, install=tuple(added), uninstall=tuple(removed))
    return Command("install-uninstall-packages", op, _title("install" if added else "uninstall", added or removed))


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
    if "set-refspec" in modifiers or "set-revision" in modifiers:
        if overrides or resets or flags.get("uninstall-all"):
            raise UsageError("set-refspec/set-revision combine only with install-packages/uninstall-packages")
        if "set-refspec" in modifiers and "set-revision" in modifiers:
            raise UsageError("give set-refspec or set-revision, not both")
        if "set-refspec" in modifiers:
            return rebase(options, modifiers["set-refspec"], install, uninstall)
        return deploy(modifiers["set-revision"], options, install, uninstall)
    if resets:
        if install or uninstall or overrides or flags.get("uninstall-all"):
            raise UsageError("no-layering/no-overrides do not combine with other modifiers")
        op = _layer("reset", options, reset_layers=bool(flags.get("no-layering")),
                    override_reset_all=bool(flags.get("no-overrides")))
        return Command("install-uninstall-packages" if flags.get("no-layering") else "override", op, "reset")
    if overrides:
        if install or uninstall or flags.get("uninstall-all"):
            raise UsageError("override modifiers do not combine with install/uninstall")
        if reset or flags.get("override-reset-all"):
            if remove or replace:
                raise UsageError("override-reset does not combine with override-remove/-replace")
            op = _layer("override", options, override_reset=tuple(reset),
                        override_reset_all=bool(flags.get("override-reset-all")))
            return Command("override", op, _title("override reset", reset))
        op = _layer("override", options, override_remove=tuple(remove), override_replace=tuple(replace))
        return Command("override", op, _title("override", "remove" if remove else "replace", remove or replace))
    if flags.get("uninstall-all"):
        op = _layer("uninstall", options, install=tuple(install), uninstall_all=True)
        return Command("install-uninstall-packages", op, "uninstall --all")
    if no_pull:
        return pkg_change(options, install, uninstall)
    return upgrade(options, install, uninstall)


def kernel_args(existing: str, added: Sequence[str], replaced: Sequence[str], deleted: Sequence[str],
                options: Mapping[str, Any], current: Callable[[], str]) -> Command:
    if existing and existing.split() != current().split():
        raise UsageError("the kernel arguments changed since they were read", hint="read them again and retry")
    fields = _options("kargs", options)
    op = ops.Kargs(append=tuple(_checked(added, "kernel argument")),
                   replace=tuple(_checked(replaced, "kernel argument")),
                   delete=tuple(_checked(deleted, "kernel argument")), **fields)
    if not (op.append or op.replace or op.delete or op.append_if_missing or op.delete_if_present
            or op.import_proc_cmdline):
        raise UsageError("KernelArgs: no kernel arguments to change")
    return Command("bootconfig", op, "kargs")


def cleanup(elements: Sequence[str]) -> Command:
    for element in elements:
        if element not in CLEANUP_ELEMENTS:
            raise UsageError(f"unknown cleanup element {element!r}",
                             hint=f"elements: {', '.join(CLEANUP_ELEMENTS)}")
    if not elements:
        raise UsageError("Cleanup: no elements given")
    fields = {field_name(CLEANUP_ELEMENTS[e]): True for e in elements}
    return Command("cleanup", ops.Cleanup(**fields), _title("cleanup", [CLEANUP_ELEMENTS[e] for e in elements]))


def refresh_md(options: Mapping[str, Any]) -> Command:
    return Command("repo-refresh", ops.RefreshMd(**_options("refresh-md", options)), "refresh-md")


def finalize(options: Mapping[str, Any]) -> Command:
    checksum = options.get("checksum", "")
    if not isinstance(checksum, str):
        raise UsageError("option 'checksum' must be a string (s)")
    rest = {k: v for k, v in options.items() if k != "checksum"}
    if not checksum and not rest.get("allow-missing-checksum"):
        raise UsageError("FinalizeDeployment: give the staged deployment's checksum, or allow-missing-checksum")
    op = ops.FinalizeDeployment(checksum or None, **_options("finalize-deployment", rest))
    return Command("finalize-deployment", op, _title("finalize-deployment", checksum))


def automatic(options: Mapping[str, Any], policy: str) -> Command | None:
    """AutomaticUpdateTrigger: None when the policy (or the ``mode`` option) is none."""
    mode = options.get("mode", "auto")
    if mode not in AUTOMATIC_MODES:
        raise UsageError(f"unknown mode {mode!r}", hint=f"modes: {', '.join(AUTOMATIC_MODES)}")
    for key in options:
        if key not in ("mode", *DAEMON_OPTIONS):
            raise UsageError(f"unknown option {key!r} for AutomaticUpdateTrigger")
    mode = policy if mode == "auto" else mode
    op = ops.automatic_mode(mode)
    return None if op is None else Command("upgrade", op, f"automatic update ({mode})")


def search(queries: Sequence[str]) -> ops.Search:
    if not queries:
        raise UsageError("Search: no query")
    return ops.Search(tuple(queries), cache_only=True)



def from_call(method: str, args: Sequence[Any], current_kargs: Callable[[], str], policy: str) -> Command | None:
    """The command for a call of OS method ``method`` with (unpacked) ``args``."""
    from apt_ostree.daemon.variants import unpack_options

    opts = unpack_options(args[TRANSACTION_METHODS[method]]) if method != "Cleanup" else {}
    if method == "UpdateDeployment":
        return update_deployment(unpack_options(args[0]), opts)
    if method == "Upgrade":
        return upgrade(opts)
    if method == "Rollback":
        return rollback(opts)
    if method == "RefreshMd":
        return refresh_md(opts)
    if method == "FinalizeDeployment":
        return finalize(opts)
    if method == "Deploy":
        return deploy(args[0], opts)
    if method == "Rebase":
        return rebase(opts, args[1], args[2])
    if method == "PkgChange":
        return pkg_change(opts, args[1], args[2])
    if method == "KernelArgs":
        return kernel_args(args[0], args[1], args[2], args[3], opts, current_kargs)
    if method == "Cleanup":
        return cleanup(args[0])
    return automatic(opts, policy)
