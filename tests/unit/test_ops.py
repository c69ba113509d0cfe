"""The CLI and apt-ostreed make the same request for the same command: argv → the CLI's request →
the D-Bus call the client makes of it → the request apt-ostreed makes of that call. And every
request and result crosses the worker's pipe unchanged."""

from __future__ import annotations

import shlex
from typing import Any

import pytest
from gi.repository import GLib

from apt_ostree import errors, verbs
from apt_ostree.cli import client, deployments, packages, surface
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


def cli_op(argv: list[str]) -> ops.Op:
    args = build_parser().parse_args(argv)
    if args.command == "upgrade":
        op = deployments.upgrade_op(args)
    elif args.command == "kargs":
        op = deployments.kargs_op(args)
    elif args.command in ("deploy", "rebase", "rollback", "cleanup", "finalize-deployment"):
        op = deployments.deployment_op(args)
    elif args.command == "refresh-md":
        op = ops.RefreshMd(force=args.force)
    else:
        op = packages.package_op(args)
    assert op is not None
    op.validate()
    return op


def daemon_op(op: ops.Op) -> ops.Op:
    method, signature, values = client.build_call(op)
    unpacked = GLib.Variant(signature, values).unpack()
    command = requests.from_call(method, unpacked, lambda: "", "none")
    assert command is not None
    command.op.validate()
    return command.op


@pytest.mark.parametrize("command", COMMANDS)
def test_the_daemon_makes_the_clis_request(command: str) -> None:
    op = cli_op(shlex.split(command))
    assert daemon_op(op) == op


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


# options of a changing verb that are no a{sv} option of its method: what the CLI does itself, and
# what its D-Bus call carries as arguments or modifiers
CLI_ONLY = {"--sysroot", "--no-queue", "--help", "-y", "--assumeyes", "--editor", "--trigger-automatic-update-policy",
            "--install", "--uninstall", "--replace", "--remove", "--all", "-a", "--overlays", "-l", "--overrides",
            "-o", "--append", "--delete", "--pending", "-p", "--rollback", "--base", "-b"}
VERB_OF = {"remove": "uninstall", "override remove": "override", "override replace": "override",
           "override reset": "override"}


@pytest.mark.parametrize("path", sorted(p for p, _ in surface.verbs(build_parser()) if p.split()[0]
                                        in verbs.MUTATING))
def test_every_flag_of_a_changing_verb_is_in_the_verb_table(path: str) -> None:
    """argparse and verbs.ALLOWED agree: each flag is an a{sv} option of the verb's method (same
    field name), or one the CLI handles itself (CLI_ONLY)."""
    parser = dict(surface.verbs(build_parser()))[path]
    verb = VERB_OF.get(path, path.split()[0])
    keys = {verbs.field_name(k) for k in verbs.ALLOWED.get(verb, ())}
    for action in parser._actions:
        flags = [f for f in action.option_strings if f not in CLI_ONLY]
        if action.option_strings and len(flags) == len(action.option_strings) and action.dest != "help":
            assert action.dest in keys, f"{path}: {action.option_strings} is not in verbs.ALLOWED[{verb!r}]"


@pytest.mark.parametrize("command", COMMANDS)
def test_each_request_has_its_polkit_action_and_method(command: str) -> None:
    """The request's D-Bus method is in the committed interface, its polkit action in the policy."""
    import re
    from pathlib import Path

    top = Path(__file__).resolve().parents[2]
    policy = set(re.findall(r'action id="org\.projectatomic\.aptostree1\.([^"]+)"',
                            (top / "data/org.projectatomic.aptostree1.policy").read_text()))
    xml = (top / "data/org.projectatomic.aptostree1.xml").read_text()
    op = cli_op(shlex.split(command))
    method, signature, values = client.build_call(op)
    assert f'<method name="{method}">' in xml and method in verbs.TRANSACTION_METHODS
    built = requests.from_call(method, GLib.Variant(signature, values).unpack(), lambda: "", "none")
    assert built is not None and built.action in policy, (command, built)
