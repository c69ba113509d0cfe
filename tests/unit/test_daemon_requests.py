"""D-Bus requests → commands: every option and modifier checked before anything is queued."""

from __future__ import annotations

import pytest

from apt_ostree.daemon import requests
from apt_ostree.errors import UsageError

pytestmark = pytest.mark.unit


def test_methods_become_commands() -> None:
    assert requests.upgrade({"reboot": True, "check": False}).argv == ("upgrade", "--reboot")
    assert requests.deploy("version=12.1", {"cache-only": True}).argv == ("deploy", "version=12.1", "--cache-only")
    assert requests.rebase({}, "updates:os/next", ["htop"]).argv == ("rebase", "updates:os/next", "--install", "htop")
    assert requests.rebase({"preview": True}, "updates:os/next", []).argv == ("rebase", "updates:os/next", "--preview")
    pkg = requests.pkg_change({"dry-run": True, "debconf": ["tzdata tzdata/Areas select Europe"]}, ["htop"], ["vim"])
    assert pkg.argv == ("install", "htop", "--uninstall", "vim", "--dry-run", "--debconf",
                        "tzdata tzdata/Areas select Europe")
    assert pkg.action == "install-uninstall-packages"
    assert requests.pkg_change({}, [], ["vim"]).argv == ("uninstall", "vim")
    assert requests.cleanup(["rollback-deploy", "base"]).argv == ("cleanup", "--rollback", "--base")
    assert requests.kernel_args("", ["quiet"], [], ["splash"], {"deploy-index": 1}, lambda: "").argv == \
        ("kargs", "--append", "quiet", "--delete", "splash", "--deploy-index", "1")
    assert requests.finalize({"checksum": "abc"}).argv == ("finalize-deployment", "abc")
    assert requests.finalize({"allow-missing-checksum": True}).argv == \
        ("finalize-deployment", "--allow-missing-checksum")
    assert requests.refresh_md({"force": True}).action == "repo-refresh"


def test_update_deployment_routes_by_modifiers() -> None:
    route = requests.update_deployment
    assert route({}, {}).argv == ("upgrade",)
    assert route({"install-packages": ["htop"]}, {}).argv == ("upgrade", "--install", "htop")
    assert route({"install-packages": ["htop"]}, {"no-pull-base": True}).argv == ("install", "htop")
    assert route({"set-refspec": "r:x", "uninstall-packages": ["a"]}, {}).argv == ("rebase", "r:x", "--uninstall", "a")
    assert route({"set-revision": "abc"}, {}).action == "deploy"
    assert route({"override-remove-packages": ["nano"], "override-replace-local-packages": ["/x.deb"]},
                 {"no-pull-base": True}).argv == ("override", "remove", "nano", "--replace", "/x.deb")
    assert route({"override-reset-all": True}, {}).argv == ("override", "reset", "--all")
    assert route({"no-layering": True}, {}).argv == ("reset", "--overlays")
    assert route({"no-layering": True, "no-overrides": True}, {}).argv == ("reset",)
    assert route({"uninstall-all": True}, {"no-pull-base": True}).argv == ("uninstall", "--all")


@pytest.mark.parametrize(("call", "message"), [
    (lambda: requests.upgrade({"bogus": True}), "unknown option 'bogus' for upgrade"),
    (lambda: requests.upgrade({"reboot": "yes"}), "option 'reboot' must be a boolean"),
    (lambda: requests.rollback({"dry-run": True}), "unknown option 'dry-run' for rollback"),
    (lambda: requests.pkg_change({}, [], []), "no packages to add or remove"),
    (lambda: requests.pkg_change({}, ["--force-all"], []), "not a valid argument"),
    (lambda: requests.update_deployment({"set-refspec": "a", "set-revision": "b"}, {}), "not both"),
    (lambda: requests.update_deployment({"frobnicate": True}, {}), "unknown modifier 'frobnicate'"),
    (lambda: requests.update_deployment({"install-packages": "htop"}, {}), "must be a list of strings"),
    (lambda: requests.cleanup(["everything"]), "unknown cleanup element 'everything'"),
    (lambda: requests.kernel_args("a b", [], [], ["c"], {}, lambda: "a"), "changed since they were read"),
    (lambda: requests.automatic({"mode": "sometimes"}, "none"), "unknown mode 'sometimes'"),
])
def test_bad_requests_name_the_culprit(call: object, message: str) -> None:
    with pytest.raises(UsageError, match=message):
        call()  # type: ignore[operator]


def test_automatic_policy() -> None:
    assert requests.automatic({}, "none") is None
    check = requests.automatic({}, "check")
    assert check is not None and check.argv == ("upgrade", "--check")
    apply = requests.automatic({"mode": "apply"}, "none")
    assert apply is not None and apply.argv == ("upgrade", "--reboot") and apply.title == "automatic update (apply)"
    assert apply.with_title({}).title == "automatic update (apply)"
    assert requests.upgrade({}).with_title({"initiating-command-line": "apt-ostree upgrade", "no-queue": True}) \
        .no_queue
