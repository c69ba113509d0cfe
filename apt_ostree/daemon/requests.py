"""D-Bus method calls → the typed request a transaction runs, and the polkit action that guards it.

A transaction runs the same engine as the CLI, in a worker process: this module turns a method's
arguments and its ``options a{sv}`` into the request (apt_ostree.core.ops) the CLI makes for the
same command, by the verb table (apt_ostree.verbs): a method's arguments are the ``call`` of the
rows that use it, its option keys theirs. Every key and type is checked before anything is
queued (an unknown option is an error, never ignored). Two methods have logic of their own:
rpm-ostree's UpdateDeployment, whose modifiers say which command it is, and
AutomaticUpdateTrigger, which asks the daemon's policy.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from apt_ostree import verbs
from apt_ostree.core import ops
from apt_ostree.errors import UsageError
from apt_ostree.verbs import AUTOMATIC_MODES, DAEMON_OPTIONS, ELEMENTS, MODIFIERS, OPTIONS, Opt, Verb


@dataclass(frozen=True)
class Command:
    action: str  # the polkit action, without the org.projectatomic.aptostree1. prefix
    op: ops.Op  # what the worker runs
    title: str  # what it is called (rpm-ostree's transaction title)
    no_queue: bool = False

    def with_title(self, options: Mapping[str, Any]) -> Command:
        title = options.get("initiating-command-line") or self.title
        return Command(self.action, self.op, str(title), bool(options.get("no-queue", False)))


_TYPES: dict[str, tuple[type, str]] = {"bool": (bool, "a boolean (b)"), "list": (list, "a list of strings (as)"),
                                       "args": (list, "a list of strings (as)"),
                                       "int": (int, "an integer (i)"), "str": (str, "a string (s)")}


def _checked(value: Any, kind: str, what: str) -> Any:
    """``value`` if it is a ``kind``: lists hold strings that are no option (``args``: may be), ints are
    no booleans."""
    python, name = _TYPES[kind]
    if isinstance(value, tuple):
        value = list(value)
    if not isinstance(value, python) or (kind == "int" and isinstance(value, bool)):
        raise UsageError(f"{what} must be {name}")
    items: list[Any] = value if isinstance(value, list) else [value] if kind == "str" else []
    if kind in ("list", "args") and not all(isinstance(v, str) for v in items):
        raise UsageError(f"{what} must be {name}")
    for item in items:
        if not item or (item.startswith("-") and kind != "args"):
            raise UsageError(f"{what}: {item!r} is not a valid argument")
    return tuple(items) if kind in ("list", "args") else value


def _daemon_option(key: str, value: Any) -> None:
    """An option the daemon reads itself (the queue, the title): UsageError if its type is wrong."""
    kind = DAEMON_OPTIONS[key]
    if not isinstance(value, kind):
        raise UsageError(f"option {key!r} has the wrong type: it must be {_TYPES[kind.__name__][1]}")


def _keyed(rows: Iterable[Verb], into: str) -> dict[str, Opt]:
    return {o.dbus_key: o for v in rows for o in v.opts if o.into == into}


def _fields(rows: Sequence[Verb], into: str, values: Mapping[str, Any], what: str) -> dict[str, Any]:
    """The request fields of an a{sv} argument; UsageError names an unknown key or a wrong type."""
    known = _keyed(rows, into)
    fixed = {key for v in rows for where, key, _ in v.send if where == into}
    fields: dict[str, Any] = {}
    noun = "option" if into == OPTIONS else "modifier"
    for key, value in values.items():
        if into == OPTIONS and key in DAEMON_OPTIONS:
            _daemon_option(key, value)
            continue
        if key in fixed:
            continue
        if key not in known:
            raise UsageError(f"unknown {noun} {key!r} for {what}",
                             hint=f"{what} takes: {', '.join(sorted(known)) or 'no ' + noun + 's'}")
        fields[known[key].dest] = _checked(value, known[key].kind, f"{noun} {key!r}")
    return fields


def _title(verb: Verb, op: ops.Op) -> str:
    words = [verb.path]
    for o in verb.opts:
        if o.positional:
            value = ops.value(op, o.dest)
            words += list(value) if isinstance(value, tuple) else [value] if value else []
    return " ".join(words)


def command(verb: Verb, op: ops.Op) -> Command:
    op.validate()
    return Command(verb.action, op, _title(verb, op))


def from_method(method: str, args: Sequence[Any]) -> Command:
    """The command of a call of a method that rows of the verb table use."""
    rows = verbs.by_method(method)
    verb = rows[0]
    if len(args) != len(verb.call):
        raise UsageError(f"{method} takes {len(verb.call)} arguments")
    fields: dict[str, Any] = {}
    for arg, value in zip(verb.call, args, strict=True):
        if arg in (OPTIONS, MODIFIERS):
            fields.update(_fields(rows, arg, _unpack(value), method))
        elif arg == ELEMENTS:
            known = _keyed(rows, ELEMENTS)
            for element in _checked(value, "list", "elements"):
                if element not in known:
                    raise UsageError(f"unknown {method.lower()} element {element!r}",
                                     hint=f"elements: {', '.join(known)}")
                fields[known[element].dest] = True
            if not value:
                raise UsageError(f"{method}: no elements given")
        elif value == "" and verb.kind(arg) == "str":
            fields[arg] = ""  # (the request's check: a revision or refspec is required, existing is not)
        else:
            fields[arg] = _checked(value, verb.kind(arg), arg)
    return command(_row_of(rows, fields), ops.build(verb.request, fields))


def _row_of(rows: Sequence[Verb], fields: Mapping[str, Any]) -> Verb:
    """The row a call of a shared method stands for (its title): the first whose positional
    argument is set (``uninstall htop`` is a PkgChange with only packages to remove)."""
    for verb in rows:
        if any(fields.get(o.dest) for o in verb.opts if o.positional):
            return verb
    return rows[0]


def _unpack(value: Any) -> dict[str, Any]:
    from apt_ostree.daemon.variants import unpack_options

    if not isinstance(value, Mapping):
        raise UsageError("expected an a{sv} argument")
    return unpack_options(value)


# UpdateDeployment's modifiers → the row whose request they make
_SET = {"set-refspec": ("rebase", "refspec"), "set-revision": ("deploy", "revision")}
_PACKAGES = {"install-packages": "install", "uninstall-packages": "uninstall"}


def update_deployment(modifiers_: Mapping[str, Any], options_: Mapping[str, Any]) -> Command:
    """rpm-ostree's general method: the modifiers say which command it is. Without the option
    ``no-pull-base`` package modifiers ride on an upgrade (``upgrade --install``), with it they
    change only the packages (``install``), as in rpm-ostree."""
    modifiers, options = dict(modifiers_), dict(options_)
    no_pull = _checked(options.pop("no-pull-base", False), "bool", "option 'no-pull-base'")
    override_rows = verbs.by_method("UpdateDeployment")
    known = {*_SET, *_PACKAGES, "uninstall-all", *_keyed(override_rows, MODIFIERS)}
    for key in modifiers:
        if key not in known:
            raise UsageError(f"unknown modifier {key!r}", hint=f"modifiers: {', '.join(sorted(known))}")
    sets = {k: _checked(modifiers.pop(k), "str", f"modifier {k!r}") for k in _SET if k in modifiers}
    packages = {f: _checked(modifiers.pop(k), "list", f"modifier {k!r}") for k, f in _PACKAGES.items()
                if k in modifiers}
    uninstall_all = _checked(modifiers.pop("uninstall-all", False), "bool", "modifier 'uninstall-all'")
    if len(sets) > 1:
        raise UsageError("give set-refspec or set-revision, not both")
    if sets and (modifiers or uninstall_all):
        raise UsageError("set-refspec/set-revision combine only with install-packages/uninstall-packages")
    if modifiers:  # override and reset modifiers: a package change
        if packages or uninstall_all:
            raise UsageError("override modifiers do not combine with install/uninstall")
        fields = _fields(override_rows, MODIFIERS, modifiers, "UpdateDeployment")
        verb = _override_row(modifiers)
        fields.update(_fields(override_rows, OPTIONS, options, "UpdateDeployment"))
        return command(verb, ops.build(verb.request, fields))
    if sets:
        (key, value), = sets.items()
        verb = verbs.BY_PATH[_SET[key][0]]
        fields = {_SET[key][1]: value, **packages, **_fields([verb], OPTIONS, options, verb.method)}
        return command(verb, ops.build(verb.request, fields))
    if uninstall_all or no_pull:
        verb = verbs.BY_PATH["uninstall" if uninstall_all else "install"]
        fields = {**packages, **_fields(verbs.by_method(verb.method), OPTIONS, options, verb.method)}
        if uninstall_all:
            fields["uninstall_all"] = True
        return command(verb, ops.build(verb.request, fields))
    verb = verbs.BY_PATH["upgrade"]
    return command(verb, ops.build(verb.request, {**packages, **_fields([verb], OPTIONS, options, verb.method)}))


def _override_row(modifiers: Mapping[str, Any]) -> Verb:
    """The row of a package change by modifiers: reset (no-layering/no-overrides), override reset,
    override remove/replace; a mix of them is an error."""
    kinds = {v.path for v in verbs.by_method("UpdateDeployment")
             for o in v.opts if o.into == MODIFIERS and o.dbus_key in modifiers}
    if "reset" in kinds:
        if set(modifiers) - {"no-layering", "no-overrides", "no-initramfs"}:
            raise UsageError("no-layering/no-overrides/no-initramfs do not combine with other modifiers")
        return verbs.BY_PATH["reset"]
    if "override reset" in kinds:
        if set(modifiers) - {"override-reset-packages", "override-reset-all"}:
            raise UsageError("override-reset does not combine with override-remove/-replace")
        return verbs.BY_PATH["override reset"]
    first = next(iter(modifiers))
    return verbs.BY_PATH["override remove" if first == "override-remove-packages" else "override replace"]


def automatic(options: Mapping[str, Any], policy: str) -> Command | None:
    """AutomaticUpdateTrigger: None when the policy (or the ``mode`` option) is none."""
    mode = options.get("mode", "auto")
    if mode not in AUTOMATIC_MODES:
        raise UsageError(f"unknown mode {mode!r}", hint=f"modes: {', '.join(AUTOMATIC_MODES)}")
    for key, value in options.items():
        if key in DAEMON_OPTIONS:
            _daemon_option(key, value)
        elif key != "mode":
            raise UsageError(f"unknown option {key!r} for AutomaticUpdateTrigger")
    mode = policy if mode == "auto" else mode
    op = ops.automatic_mode(mode)
    return None if op is None else Command("upgrade", op, f"automatic update ({mode})")


def search(queries: Sequence[str]) -> ops.Search:
    op = ops.Search(_checked(list(queries), "list", "queries"), cache_only=True)
    op.validate()
    return op


def transaction_methods() -> dict[str, int]:
    """The OS methods that start a transaction → the position of their options a{sv} (-1: none)."""
    names = [*verbs.methods(), *verbs.OTHER_TRANSACTION_METHODS]
    return {m: verbs.options_position(m) for m in names}


def from_call(method: str, args: Sequence[Any], policy: str) -> Command | None:
    """The command for a call of OS method ``method`` with (unpacked) ``args``."""
    if method == "AutomaticUpdateTrigger":
        return automatic(_unpack(args[0]), policy)
    if method == "UpdateDeployment":
        return update_deployment(_unpack(args[0]), _unpack(args[1]))
    return from_method(method, args)

