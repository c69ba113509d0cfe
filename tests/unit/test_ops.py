"""The CLI and apt-ostreed make the same request for the same command: argv → the CLI's request →
the D-Bus call the client makes of it → the request apt-ostreed makes of that call. And every
request and result crosses the worker's pipe unchanged."""

from __future__ import annotations

import shlex
from typing import Any

import pytest
from gi.repository import GLib

from apt_ostree import errors, verbs
from apt_ostree.cli import client, table
from apt_ostree.cli.main import build_parser
from apt_ostree.core import ops, wire
from apt_ostree.core.apt import Package
from apt_ostree.core.ops import Request
from apt_ostree.core.pkgdb import Change, PackageDiff
from apt_ostree.core.plan import Plan, PlannedPackage
from apt_ostree.daemon import requests
from apt_ostree.dbus_names import TYPED_ERRORS, error_class_name, error_name

pytestmark = pytest.mark.unit

COMMANDS = [
    "upgrade", "upgrade --check", "upgrade --preview -C", "upgrade --download-only --allow-downgrade",
    "upgrade -r --lock-finalization --unchanged-exit-77", "upgrade --install htop --uninstall vim",
    "deploy version=13.2", "deploy abc123 -C --install jq", "rebase updates:debian/trixie/x86_64/minimal",
    "rebase --preview r:x --uninstall=chrony", "rebase -r --lock-finalization r:x",
    "rollback", "rollback -r", "cleanup -p", "cleanup -r -b",
    "kargs --append=quiet", "kargs --append=a=1 --replace=b=2 --delete=c --deploy-index=1",
    "kargs --append-if-missing=x --delete-if-present=y --lock-finalization -r --unchanged-exit-77",
    "kargs --import-proc-cmdline",
    "install htop", "install htop jq --uninstall vim -n", "install htop --idempotent --allow-inactive -C",
    "install tzdata --debconf 'tzdata tzdata/Areas select Europe' --download-only --lock-finalization -r",
    "uninstall htop", "uninstall --all", "uninstall --all --install jq", "uninstall htop --install jq",
    "override remove nano", "override remove nano --replace /tmp/x.deb", "override replace /tmp/x.deb",
    "override replace /tmp/x.deb --remove less", "override reset nano", "override reset --all",
    "reset", "reset -l", "reset -o", "reset -l -o --unchanged-exit-77",
    "refresh-md", "refresh-md -f", "finalize-deployment abc", "finalize-deployment --allow-missing-checksum",
]


def cli_op(argv: list[str]) -> tuple[verbs.Verb, ops.Op]:
    """The row and the request the CLI makes for ``argv`` (what cli/table.py's run_verb runs)."""
    args = build_parser().parse_args(argv)
    verb = args.verb
    op = table.request_of(verb, args)
    prepare = table.PREPARE.get(verb.path)
    if prepare is not None and verb.path != "kargs":  # (kargs without a change reads the sysroot)
        op = prepare(args, op)
    assert not isinstance(op, int)
    op.validate()
    return verb, op


def daemon_op(verb: verbs.Verb, op: ops.Op) -> ops.Op:
    method, signature, values = client.build_call(verb, op)
    unpacked = GLib.Variant(signature, tuple(values)).unpack()
    command = requests.from_call(method, unpacked, "none")
    assert command is not None
    command.op.validate()
    return command.op


@pytest.mark.parametrize("command", COMMANDS)
def test_the_daemon_makes_the_clis_request(command: str) -> None:
    verb, op = cli_op(shlex.split(command))
    assert daemon_op(verb, op) == op


SAMPLES: list[Any] = [
    ops.PackageChange(Request(install=("htop", "/x.deb"), debconf=("a b c d",)), dry_run=True, reboot=True),
    ops.Kargs(append=("quiet",), deploy_index=0), ops.FinalizeDeployment(None, True), ops.Search(("name:ht*",)),
    ops.Deploy("version=13.2", install=("jq",), reboot=True), ops.Rebase("r:x", preview=True), ops.Upgrade(check=True),
    ops.Result(changed=True, checksum="a" * 64, previous="b" * 64, version="13.2",
               diff=PackageDiff((Package("htop", "3.4", "amd64"),), (), (Change("bash", "amd64", "5.2", "5.3"),), ()),
               plan=Plan(install=(PlannedPackage("htop", "3.4", "amd64", 1000),),
                         replace=(("less", "1", PlannedPackage("less", "2", "amd64", 5)),), inactive=("bash",)),
               deployment=ops.NewDeployment("debian-" + "a" * 64 + ".0", True), booted=True,
               removed=("x",), found=(("htop", "3.4", "viewer"),)),
]


@pytest.mark.parametrize("value", SAMPLES)
def test_the_worker_pipe_keeps_requests_and_results(value: Any) -> None:
    import json

    assert wire.decode(json.loads(json.dumps(wire.encode(value)))) == value


def test_typed_errors_cross_with_their_class() -> None:
    classes = {c.__name__ for c in vars(errors).values()
               if isinstance(c, type) and issubclass(c, errors.AptOstreeError)}
    assert set(TYPED_ERRORS) == classes
    for name in TYPED_ERRORS:
        assert error_class_name(error_name(name)) == name
        e = wire.decode_error(name, "the message", "the hint")
        assert type(e).__name__ == name and e.message == "the message" and e.hint == "the hint"
    assert error_name("ValueError").endswith(".Error.AptOstreeError")


@pytest.mark.parametrize("command", COMMANDS)
def test_each_request_has_its_polkit_action_and_method(command: str) -> None:
    """The request's D-Bus method is in the committed interface, its polkit action in the policy."""
    import re
    from pathlib import Path

    top = Path(__file__).resolve().parents[2]
    policy = set(re.findall(r'action id="org\.projectatomic\.aptostree1\.([^"]+)"',
                            (top / "data/org.projectatomic.aptostree1.policy").read_text()))
    xml = (top / "data/org.projectatomic.aptostree1.xml").read_text()
    verb, op = cli_op(shlex.split(command))
    method, signature, values = client.build_call(verb, op)
    assert f'<method name="{method}">' in xml and method in requests.transaction_methods()
    built = requests.from_call(method, GLib.Variant(signature, tuple(values)).unpack(), "none")
    assert built is not None and built.action in policy, (command, built)
