"""Facts about the verbs that both sides of the D-Bus boundary need, in one place: which verbs
change the system (the CLI sends those to apt-ostreed), and for each the ``options a{sv}`` keys
its D-Bus method takes with the CLI flag each one stands for. cli/ and daemon/ import this; it
imports neither (nor anything else of apt_ostree).
"""

from __future__ import annotations

# the verbs that change the system: run as apt-ostreed transactions when a daemon serves the sysroot
MUTATING = ("upgrade", "deploy", "rebase", "rollback", "cleanup", "kargs", "finalize-deployment", "install",
            "uninstall", "remove", "override", "reset", "refresh-md")

# boolean options (a{sv} key) → the CLI flag
FLAGS = {
    "reboot": "--reboot", "cache-only": "--cache-only", "download-only": "--download-only",
    "dry-run": "--dry-run", "lock-finalization": "--lock-finalization",
    "unchanged-exit-77": "--unchanged-exit-77", "allow-downgrade": "--allow-downgrade",
    "idempotent-layering": "--idempotent", "allow-inactive-requests": "--allow-inactive",
    "check": "--check", "preview": "--preview", "force": "--force",
    "allow-missing-checksum": "--allow-missing-checksum", "import-proc-cmdline": "--import-proc-cmdline",
}
# list options → the CLI flag given once per item
LISTS = {"debconf": "--debconf", "append-if-missing": "--append-if-missing",
         "delete-if-present": "--delete-if-present"}
# options every method takes: handled by the daemon, not passed on
DAEMON_OPTIONS = {"no-queue": bool, "initiating-command-line": str}

_DEPLOY = ("reboot", "cache-only", "lock-finalization", "unchanged-exit-77")
_LAYER = (*_DEPLOY, "dry-run", "download-only", "idempotent-layering", "allow-inactive-requests", "debconf")
ALLOWED = {
    "upgrade": (*_DEPLOY, "download-only", "check", "preview", "allow-downgrade"),
    "deploy": _DEPLOY,
    "rebase": (*_DEPLOY, "preview"),
    "rollback": ("reboot",),
    "install": _LAYER,
    "uninstall": _LAYER,
    "override": _LAYER,
    "reset": _LAYER,
    "kargs": ("reboot", "lock-finalization", "unchanged-exit-77", "import-proc-cmdline", "append-if-missing",
              "delete-if-present", "deploy-index"),
    "refresh-md": ("force",),
    "finalize-deployment": ("checksum", "allow-missing-checksum"),
}


def field_name(key_or_flag: str) -> str:
    """The request field (apt_ostree.core.ops) and argparse dest of an a{sv} key or a CLI flag."""
    return FLAGS.get(key_or_flag, key_or_flag).lstrip("-").replace("-", "_")


# the OS methods that start a transaction → the position of their options a{sv} (Cleanup has none)
TRANSACTION_METHODS = {"UpdateDeployment": 1, "Upgrade": 0, "Rollback": 0, "RefreshMd": 0, "FinalizeDeployment": 0,
                       "Deploy": 1, "Rebase": 0, "PkgChange": 0, "KernelArgs": 4, "Cleanup": -1,
                       "AutomaticUpdateTrigger": 0}
CLEANUP_ELEMENTS = {"pending-deploy": "--pending", "rollback-deploy": "--rollback", "base": "--base"}
AUTOMATIC_MODES = ("auto", "none", "check", "stage", "apply")
