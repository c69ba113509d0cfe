"""/etc/apt-ostreed.conf: the daemon's settings, parsed and validated before anything runs.

A GLib-style key file with one group, ``[Daemon]`` (rpm-ostreed.conf's keys)::

    [Daemon]
    AutomaticUpdatePolicy=none      # none | check | stage | apply
    IdleExitTimeout=60              # seconds; 0: never exit
    LockLayering=false              # refuse install/uninstall/override/reset
    Recommends=true                 # layer Recommends of requested packages

The file is read from the deployment changes start from (``/etc`` on the booted system), so the
daemon and the in-process CLI see the same settings.
"""

from __future__ import annotations

import configparser
from dataclasses import dataclass
from pathlib import Path

from apt_ostree.errors import UsageError

CONFIG_NAME = "apt-ostreed.conf"
POLICIES = ("none", "check", "stage", "apply")
_POLICY_ALIASES = {"off": "none", "ex-stage": "stage"}
_BOOLEANS = {"true": True, "yes": True, "1": True, "false": False, "no": False, "0": False}
_KEYS = ("AutomaticUpdatePolicy", "IdleExitTimeout", "LockLayering", "Recommends")


@dataclass(frozen=True)
class DaemonConfig:
    automatic_update_policy: str = "none"
    idle_exit_timeout: int = 60
    lock_layering: bool = False
    recommends: bool = True


def config_path(deployment_root: Path) -> Path:
    return Path(deployment_root) / "etc" / CONFIG_NAME


def of_deployment(deployment_root: Path) -> DaemonConfig:
    """The settings a deployment (or any root with an /etc) has."""
    return load(config_path(deployment_root))


def load(path: Path) -> DaemonConfig:
    """The settings in ``path`` (defaults when it does not exist); UsageError names the bad key."""
    path = Path(path)
    if not path.exists():
        return DaemonConfig()
    parser = configparser.ConfigParser(interpolation=None, inline_comment_prefixes=("#", ";"))
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    try:
        parser.read_string(path.read_text(), source=str(path))
    except (configparser.Error, UnicodeDecodeError, OSError) as e:
        raise UsageError(f"{path}: cannot parse: {str(e).splitlines()[0]}") from None
    unknown_groups = [g for g in parser.sections() if g != "Daemon"]
    if unknown_groups:
        raise UsageError(f"{path}: unknown group [{unknown_groups[0]}]", hint="the only group is [Daemon]")
    if not parser.has_section("Daemon"):
        return DaemonConfig()
    section = parser["Daemon"]
    for key in section:
        if key not in _KEYS:
            raise UsageError(f"{path}: [Daemon] {key}: unknown key", hint=f"known keys: {', '.join(_KEYS)}")
    policy = section.get("AutomaticUpdatePolicy", "none").strip().lower()
    policy = _POLICY_ALIASES.get(policy, policy)
    if policy not in POLICIES:
        raise UsageError(f"{path}: [Daemon] AutomaticUpdatePolicy: {policy!r} is not one of {', '.join(POLICIES)}")
    timeout_text = section.get("IdleExitTimeout", "60").strip()
    if not timeout_text.isdigit():
        raise UsageError(f"{path}: [Daemon] IdleExitTimeout: {timeout_text!r} is not a number of seconds")
    return DaemonConfig(automatic_update_policy=policy, idle_exit_timeout=int(timeout_text),
                        lock_layering=_boolean(path, section, "LockLayering", False),
                        recommends=_boolean(path, section, "Recommends", True))


def _boolean(path: Path, section: configparser.SectionProxy, key: str, default: bool) -> bool:
    text = section.get(key)
    if text is None:
        return default
    value = _BOOLEANS.get(text.strip().lower())
    if value is None:
        raise UsageError(f"{path}: [Daemon] {key}: {text!r} is not true or false")
    return value
