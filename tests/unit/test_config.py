"""apt-ostreed.conf: defaults, every key, and one clear error per bad line."""

from __future__ import annotations

from pathlib import Path

import pytest

from apt_ostree.core.config import DaemonConfig, load
from apt_ostree.errors import UsageError

pytestmark = pytest.mark.unit


def test_defaults_and_keys(tmp_path: Path) -> None:
    assert load(tmp_path / "missing.conf") == DaemonConfig()
    conf = tmp_path / "apt-ostreed.conf"
    conf.write_text("# comment\n[Daemon]\nAutomaticUpdatePolicy=ex-stage\nIdleExitTimeout=0\n"
                    "LockLayering=yes\nRecommends=false\n")
    assert load(conf) == DaemonConfig("stage", 0, True, False)
    conf.write_text("[Daemon]\n#AutomaticUpdatePolicy=apply\n")
    assert load(conf) == DaemonConfig()


@pytest.mark.parametrize(("text", "message"), [
    ("[Daemon]\nAutomaticUpdatePolicy=sometimes\n", r"AutomaticUpdatePolicy: 'sometimes' is not one of"),
    ("[Daemon]\nIdleExitTimeout=soon\n", r"IdleExitTimeout: 'soon' is not a number"),
    ("[Daemon]\nLockLayering=maybe\n", r"LockLayering: 'maybe' is not true or false"),
    ("[Daemon]\nAutoUpdate=stage\n", r"\[Daemon\] AutoUpdate: unknown key"),
    ("[Deamon]\nIdleExitTimeout=1\n", r"unknown group \[Deamon\]"),
    ("IdleExitTimeout=1\n", "cannot parse"),
])
def test_bad_config(tmp_path: Path, text: str, message: str) -> None:
    conf = tmp_path / "apt-ostreed.conf"
    conf.write_text(text)
    with pytest.raises(UsageError, match=message) as e:
        load(conf)
    assert str(conf) in e.value.message
