"""The automatic fallback's pieces that need no sysroot: GRUB's environment block as grub-editenv reads
and writes it, the static grub.cfg as GRUB's parser reads it, and the state changes (core/boot_trial.py)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from apt_ostree.core import boot_trial, grub

pytestmark = pytest.mark.unit


def editenv(path: Path, *args: str) -> str:
    return subprocess.run(["grub-editenv", str(path), *args], check=True, capture_output=True, text=True).stdout


def test_the_block_is_grubs(tmp_path: Path) -> None:
    (tmp_path / "boot").mkdir()
    env = boot_trial.env_path(tmp_path)
    boot_trial.create(env)
    assert editenv(env, "list") == "" and env.stat().st_size == 1024
    editenv(env, "set", "saved_entry=2", "aot_trial=tried")
    assert boot_trial.state(tmp_path) == "tried"
    boot_trial.set_state(tmp_path, boot_trial.FAILED)
    assert editenv(env, "list").splitlines() == ["saved_entry=2", "aot_trial=failed"]
    boot_trial.set_state(tmp_path, None)
    assert editenv(env, "list").splitlines() == ["saved_entry=2"] and env.stat().st_size == 1024


def test_no_block_no_trial(tmp_path: Path) -> None:
    boot_trial.default_changed(tmp_path, default_is_booted=False)  # (an image from before the fallback)
    assert not boot_trial.env_path(tmp_path).exists() and boot_trial.state(tmp_path) is None
    assert boot_trial.confirm(tmp_path, booted_is_default=True) == "no trial"


@pytest.mark.parametrize(("state", "booted_is_default", "after"), [
    ("tried", True, None),        # the default booted: confirmed
    ("failed", True, None),       # (rolled back by hand, or chosen at the menu: the running one is fine)
    ("new", True, "new"),         # staged during this boot: its trial is still to come
    ("tried", False, "new"),      # another entry chosen at the menu: the default has not had its boot
    ("failed", False, "failed"),  # GRUB fell back: it stays until a rollback or a new deployment
])
def test_confirm(tmp_path: Path, state: str, booted_is_default: bool, after: str | None) -> None:
    (tmp_path / "boot").mkdir()
    boot_trial.create(boot_trial.env_path(tmp_path))
    boot_trial.set_state(tmp_path, state)
    boot_trial.confirm(tmp_path, booted_is_default)
    assert boot_trial.state(tmp_path) == after


def test_the_static_menu_parses(tmp_path: Path) -> None:
    cfg = tmp_path / "grub.cfg"
    cfg.write_text(grub.STATIC_CFG)
    subprocess.run(["grub-script-check", str(cfg)], check=True)
    # the fallback comes after the menu is sourced: a grub-mkconfig menu sets default itself
    assert grub.STATIC_CFG.index("source /loader/grub.cfg") < grub.STATIC_CFG.index("set default=1")
