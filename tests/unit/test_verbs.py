"""The verb table (apt_ostree.verbs) is the one list of the changing verbs: its rows agree with
each other, with the request classes, and with what is generated from them (data/'s D-Bus
interface and polkit actions). And a verb is added with its row and its request, nothing else."""

from __future__ import annotations

import dataclasses
import shlex

import pytest
from gi.repository import Gio, GLib

from apt_ostree import verbs
from apt_ostree.cli import client, table
from apt_ostree.cli.main import build_parser
from apt_ostree.core import ops
from apt_ostree.daemon import interface, requests
from apt_ostree.errors import UsageError
from apt_ostree.verbs import CLI, MODIFIERS, OPTIONS, Opt, Verb

pytestmark = pytest.mark.unit


def _fields(verb: Verb) -> set[str]:
    cls = next(c for c in ops.OPS if c.__name__ == verb.request)
    names = {f.name for f in dataclasses.fields(cls)}
    return names | ({f.name for f in dataclasses.fields(ops.Request)} if cls is ops.PackageChange else set())


@pytest.mark.parametrize("verb", verbs.VERBS, ids=lambda v: v.path)
def test_every_option_is_a_field_of_the_request(verb: Verb) -> None:
    fields = _fields(verb)
    for o in verb.opts:
        assert (o.into == CLI) == (o.dest not in fields), f"{verb.path}: {o.names} -> {o.dest}"
    for arg in verb.call:
        assert arg in (OPTIONS, MODIFIERS, verbs.ELEMENTS) or arg in fields, f"{verb.path}: call names {arg}"
    assert (verb.action in verbs.ACTIONS) == verb.changes


@pytest.mark.parametrize("method", sorted(verbs.methods()))
def test_rows_of_a_method_agree(method: str) -> None:
    rows = verbs.by_method(method)
    assert {v.call for v in rows} == {rows[0].call} and {v.request for v in rows} == {rows[0].request}
    if method != "UpdateDeployment":  # (its modifiers name the row, and so the action: daemon/requests.py)
        assert {v.action for v in rows} == {rows[0].action}
    seen: dict[tuple[str, str], tuple[str, str]] = {}
    for o in (o for v in rows for o in v.opts if o.into in (OPTIONS, MODIFIERS)):
        assert seen.setdefault((o.into, o.dbus_key), (o.dest, o.kind)) == (o.dest, o.kind), (method, o)


def test_data_files_are_generated_from_the_table() -> None:
    assert interface.XML.read_text() == interface.xml(interface.XML.read_text()), "run make generated"
    assert interface.POLICY.read_text() == interface.policy(), "run make generated"


def test_the_interface_has_each_methods_signature() -> None:
    node = Gio.DBusNodeInfo.new_for_xml(interface.XML.read_text())
    os_iface = node.lookup_interface("org.projectatomic.aptostree1.OS")
    for method, verb in verbs.methods().items():
        info = os_iface.lookup_method(method)
        assert "".join(a.signature for a in info.in_args) == verb.signature()
    assert set(requests.transaction_methods()) == {*verbs.methods(), *verbs.OTHER_TRANSACTION_METHODS}


def test_a_verb_is_its_row_and_its_request(monkeypatch: pytest.MonkeyPatch) -> None:
    """A new verb with a method of its own, e.g. rpm-ostree's SetInitramfsState(b regenerate,
    as args, a{sv} options): the row and the request class, and argv makes the same request in
    the CLI and in apt-ostreed, with the table's option checks."""

    @dataclasses.dataclass(frozen=True)
    class Regenerate:
        regenerate: bool = False
        args: tuple[str, ...] = ()
        reboot: bool = False

        def validate(self) -> None:
            pass

    row = Verb("initramfs-x", "regenerate the initramfs", "Regenerate", (
        Opt("--enable", "regenerate it on the client", into=verbs.ARG, field="regenerate"),
        Opt("--arg", "a dracut argument", kind="list", into=verbs.ARG, field="args", metavar="ARG"),
        Opt("-r --reboot", "reboot")), method="SetInitramfsStateX", action="bootconfig",
        call=("regenerate", "args", OPTIONS))
    monkeypatch.setattr(ops, "OPS", (*ops.OPS, Regenerate))
    monkeypatch.setattr(verbs, "VERBS", (*verbs.VERBS, row))
    monkeypatch.setitem(verbs.BY_PATH, row.path, row)
    args = build_parser().parse_args(shlex.split("initramfs-x --enable --arg=-I --arg=/etc/x -r"))
    assert args.verb is row
    op = table.request_of(row, args)
    assert op == Regenerate(True, ("-I", "/etc/x"), reboot=True)
    method, signature, values = client.build_call(row, op)
    assert (method, signature) == ("SetInitramfsStateX", "(basa{sv})")
    with pytest.raises(UsageError, match="not a valid argument"):  # (the daemon's check of an as argument)
        requests.from_call(method, GLib.Variant(signature, tuple(values)).unpack(), "none")
    op = Regenerate(True, ("/etc/x",), reboot=True)
    _, signature, values = client.build_call(row, op)
    command = requests.from_call(method, GLib.Variant(signature, tuple(values)).unpack(), "none")
    assert command is not None and command.op == op and command.action == "bootconfig"
    assert method in requests.transaction_methods()
    assert f'<method name="{method}">' in interface.methods_xml()
