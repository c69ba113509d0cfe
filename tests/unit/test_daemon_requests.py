"""D-Bus requests → commands: every option and modifier checked before anything is queued."""

from __future__ import annotations

import pytest

from apt_ostree.core import ops
from apt_ostree.core.ops import Request
from apt_ostree.daemon import requests
from apt_ostree.errors import UsageError

pytestmark = pytest.mark.unit


def call(method: str, *args: object) -> requests.Command:
    command = requests.from_call(method, args, "none")
    assert command is not None
    return command


def test_methods_become_requests() -> None:
    assert call("Upgrade", {"reboot": True, "check": False}).op == ops.Upgrade(reboot=True)
    assert call("Deploy", "version=12.1", {"cache-only": True}).op == ops.Deploy("version=12.1", cache_only=True)
    assert call("Rebase", {}, "updates:os/next", ["htop"]).op == ops.Rebase("updates:os/next", install=("htop",))
    assert call("Rebase", {"preview": True}, "updates:os/next", []).op == ops.Rebase("updates:os/next", preview=True)
    pkg = call("PkgChange", {"dry-run": True, "debconf": ["tzdata tzdata/Areas select Europe"]}, ["htop"], ["vim"])
    assert pkg.op == ops.PackageChange(Request(install=("htop",), uninstall=("vim",),
                                               debconf=("tzdata tzdata/Areas select Europe",)), dry_run=True)
    assert pkg.action == "install-uninstall-packages" and pkg.title == "install htop"
    assert call("PkgChange", {}, [], ["vim"]).op == ops.PackageChange(Request(uninstall=("vim",)))
    assert call("PkgChange", {}, [], ["vim"]).title == "uninstall vim"
    assert call("Cleanup", ["rollback-deploy", "base"]).op == ops.Cleanup(rollback=True, base=True)
    assert call("KernelArgs", "", ["quiet"], [], ["splash"], {"deploy-index": 1}).op == \
        ops.Kargs(append=("quiet",), delete=("splash",), deploy_index=1)
    assert call("KernelArgs", "a b", ["quiet"], [], [], {}).op == ops.Kargs(append=("quiet",), existing="a b")
    assert call("FinalizeDeployment", {"checksum": "abc"}).op == ops.FinalizeDeployment("abc")
    assert call("FinalizeDeployment", {"allow-missing-checksum": True}).op == \
        ops.FinalizeDeployment(None, allow_missing_checksum=True)
    assert call("RefreshMd", {"force": True}).action == "repo-refresh"


def test_update_deployment_routes_by_modifiers() -> None:
    def route(modifiers: dict[str, object], options: dict[str, object]) -> object:
        return requests.update_deployment(modifiers, options).op

    assert route({}, {}) == ops.Upgrade()
    assert route({"install-packages": ["htop"]}, {}) == ops.Upgrade(install=("htop",))
    assert route({"install-packages": ["htop"]}, {"no-pull-base": True}) == \
        ops.PackageChange(Request(install=("htop",)))
    assert route({"set-refspec": "r:x", "uninstall-packages": ["a"]}, {}) == ops.Rebase("r:x", uninstall=("a",))
    assert requests.update_deployment({"set-revision": "abc"}, {}).action == "deploy"
    assert route({"override-remove-packages": ["nano"], "override-replace-local-packages": ["/x.deb"]},
                 {"no-pull-base": True}) == \
        ops.PackageChange(Request(override_remove=("nano",), override_replace=("/x.deb",)))
    assert route({"override-reset-all": True}, {}) == ops.PackageChange(Request(override_reset_all=True))
    assert route({"no-layering": True}, {}) == ops.PackageChange(Request(reset_layers=True))
    assert route({"no-layering": True, "no-overrides": True}, {}) == \
        ops.PackageChange(Request(reset_layers=True, override_reset_all=True))
    assert route({"uninstall-all": True}, {"no-pull-base": True}) == ops.PackageChange(Request(uninstall_all=True))


@pytest.mark.parametrize(("call", "message"), [
    (lambda: call("Upgrade", {"bogus": True}), "unknown option 'bogus' for Upgrade"),
    (lambda: call("Upgrade", {"reboot": "yes"}), "option 'reboot' must be a boolean"),
    (lambda: call("Rollback", {"dry-run": True}), "unknown option 'dry-run' for Rollback"),
    (lambda: call("PkgChange", {}, [], []), "no packages to change"),
    (lambda: call("PkgChange", {}, ["--force-all"], []), "not a valid argument"),
    (lambda: call("Deploy", "", {}), "revision: '' is not a valid argument"),
    (lambda: call("Upgrade", {"deploy-index": 1}), "unknown option 'deploy-index' for Upgrade"),
    (lambda: call("KernelArgs", "", [], [], [], {"deploy-index": True}), "must be an integer"),
    (lambda: call("Cleanup", []), "Cleanup: no elements given"),
    (lambda: requests.update_deployment({"set-refspec": "a", "set-revision": "b"}, {}), "not both"),
    (lambda: requests.update_deployment({"frobnicate": True}, {}), "unknown modifier 'frobnicate'"),
    (lambda: requests.update_deployment({"install-packages": "htop"}, {}), "must be a list of strings"),
    (lambda: call("Cleanup", ["everything"]), "unknown cleanup element 'everything'"),
    (lambda: requests.automatic({"mode": "sometimes"}, "none"), "unknown mode 'sometimes'"),
])
def test_bad_requests_name_the_culprit(call: object, message: str) -> None:
    with pytest.raises(UsageError, match=message):
        call()  # type: ignore[operator]


def test_automatic_policy() -> None:
    assert requests.automatic({}, "none") is None
    check = requests.automatic({}, "check")
    assert check is not None and check.op == ops.Upgrade(check=True)
    apply = requests.automatic({"mode": "apply"}, "none")
    assert apply is not None and apply.op == ops.Upgrade(reboot=True) and apply.title == "automatic update (apply)"
    assert apply.with_title({}).title == "automatic update (apply)"
    assert call("Upgrade", {}).with_title({"initiating-command-line": "apt-ostree upgrade", "no-queue": True}) \
        .no_queue
