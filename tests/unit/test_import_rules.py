"""The import rules of docs/architecture.md, checked on every module's imports (lazy ones included):
which package may import which, and the few modules that may touch subprocess, libostree and
libapt directly. An exception is listed here with the reason it is still there."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit

PACKAGE = Path(__file__).resolve().parents[2] / "apt_ostree"

# (importer, imported) pairs left to remove, with why
EXCEPTIONS: dict[tuple[str, str], str] = {}  # (module, import) -> why, while a rule cannot hold yet
NEVER = {  # a module under the key's directory never imports these
    "core": ("apt_ostree.cli", "apt_ostree.daemon", "apt_ostree.compose"),
    "compose": ("apt_ostree.cli", "apt_ostree.daemon"),
    "cli": ("apt_ostree.daemon",),
    "daemon": ("apt_ostree.cli",),
}
LEAVES = ("verbs.py", "dbus_names.py", "errors.py")  # shared by cli and daemon: import nothing of apt_ostree
ONLY = {  # a module that only these files may import
    "subprocess": {"run.py", "cli/deployments.py", "cli/client.py"},  # ($EDITOR and pkttyagent: the user's tty)
    "apt_pkg": {"core/apt.py", "core/layer_apt.py", "core/layer_dpkg.py", "core/apt_acquire.py",
                "core/deb_check.py"},  # the APT facades
}
OSTREE_FACADES = {"core/ostree.py", "core/sysroot.py", "core/ostree_overlay.py", "core/ostree_objects.py",
                  "core/ostree_publish.py"}


def imports(path: Path) -> list[str]:
    """Every module ``path`` imports, ``from X import a, b`` as X.a and X.b too."""
    names = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.append(node.module)
            names += [f"{node.module}.{a.name}" for a in node.names]
    return names


MODULES = sorted(str(p.relative_to(PACKAGE)) for p in PACKAGE.rglob("*.py"))


def _hits(name: str, forbidden: str) -> bool:
    return name == forbidden or name.startswith(forbidden + ".")


@pytest.mark.parametrize("module", MODULES)
def test_import_rules(module: str) -> None:
    names = imports(PACKAGE / module)
    top = module.split("/")[0]
    bad = [n for n in names for f in NEVER.get(top, ()) if _hits(n, f) and (module, f) not in EXCEPTIONS]
    assert bad == [], f"{module} imports {bad}"
    if module in LEAVES:
        assert [n for n in names if _hits(n, "apt_ostree")] == [], f"{module} must not import apt_ostree"
    for lib, allowed in ONLY.items():
        if module not in allowed:
            assert not any(_hits(n, lib) for n in names), f"{module} imports {lib} (only {sorted(allowed)})"
    if module not in OSTREE_FACADES:
        assert "gi.repository.OSTree" not in names, f"{module} uses libostree outside the facades"


def test_the_exceptions_are_still_needed() -> None:
    for (module, forbidden), why in EXCEPTIONS.items():
        assert any(_hits(n, forbidden) for n in imports(PACKAGE / module)), f"remove the exception: {why}"
