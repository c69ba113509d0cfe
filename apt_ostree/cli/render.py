"""The one renderer of an operation's result, in-process and through apt-ostreed alike.

:func:`run_op` runs a request (apt_ostree.core.ops) in-process, or sends it to apt-ostreed and
gets the same typed result (or error) back; :func:`render` prints it as rpm-ostree would and
returns the exit code. Nothing here decides anything about the system.
"""

from __future__ import annotations

import argparse
import json

from apt_ostree.cli import client
from apt_ostree.cli.common import diff_lines, out, plan_lines, progress_for
from apt_ostree.core import ops
from apt_ostree.core.execute import execute
from apt_ostree.errors import EXIT_UNCHANGED


def run_op(args: argparse.Namespace, op: ops.Op, automatic: bool = False) -> int:
    """Run ``op`` and render its result (``automatic``: the daemon's AutomaticUpdatePolicy decides
    what the upgrade is)."""
    op.validate()
    if client.wants_daemon(args):
        ran = client.run(args, op, automatic)
        if ran is None:
            out("Automatic updates are not enabled.")
            return 0
        op, result = ran
    else:
        result = execute(op, args.sysroot, progress_for(args))
    return render(op, result, json_output=bool(getattr(args, "json", False)))


def _unchanged(op: ops.Op, message: str) -> int:
    out(message)
    return EXIT_UNCHANGED if getattr(op, "unchanged_exit_77", False) else 0


def _diff(result: ops.Result) -> None:
    if result.diff is not None:
        for line in diff_lines(result.diff):
            out(line)


def _finish(op: ops.Op, result: ops.Result) -> int:
    d = result.deployment
    if d is not None:
        out(f"{'Staged' if d.staged else 'Deployed'}: {d.id}")
        if result.booted:
            out("Rebooting." if result.rebooting else "Run \"systemctl reboot\" to start the new deployment.")
    return 0


def _commit_line(prefix: str, result: ops.Result) -> str:
    return f"{prefix} commit: {result.checksum}" + (f" (version {result.version})" if result.version else "")


def render(op: ops.Op, result: ops.Result, json_output: bool = False) -> int:
    if isinstance(op, ops.Upgrade):
        if not result.changed:
            return _unchanged(op, "No upgrade available.")
        out(_commit_line("Available" if op.check or op.preview else "New", result))
        if op.preview or not (op.check or op.download_only):
            _diff(result)
        return 0 if op.check or op.preview or op.download_only else _finish(op, result)
    if isinstance(op, ops.Rebase) and op.preview:
        if not result.changed:
            return _unchanged(op, f"Already on {op.refspec}: {result.checksum}")
        out(_commit_line("Available", result))
        _diff(result)
        if result.plan is not None:
            out("Layered packages on the new base:")
            for line in plan_lines(result.plan):
                out(f"  {line}")
        return 0
    if isinstance(op, ops.Deploy | ops.Rebase):
        if not result.changed:
            what = "Already deployed" if isinstance(op, ops.Deploy) else f"Already on {op.refspec}"
            return _unchanged(op, f"{what}: {result.checksum}")
        _diff(result)
        return _finish(op, result)
    if isinstance(op, ops.Rollback):
        out(f"Moving '{result.moved}' to be first deployment")
        return 0
    if isinstance(op, ops.Cleanup):
        for removed in result.removed:
            out(f"Deployment removed: {removed}")
        if not result.removed:
            out("No deployments removed.")
        return 0
    if isinstance(op, ops.Kargs):
        if not result.changed:
            return _unchanged(op, "Kernel arguments unchanged.")
        out("Kernel arguments updated.")
        return _finish(op, result)
    if isinstance(op, ops.PackageChange):
        if not result.changed:
            return _unchanged(op, "No change.")
        if result.plan is not None and (op.dry_run or op.download_only):
            for line in plan_lines(result.plan):
                out(line)
            out("Exiting because of '--dry-run' option" if op.dry_run else "Downloaded; nothing deployed.")
            return 0
        _diff(result)
        return _finish(op, result)
    if isinstance(op, ops.RefreshMd):
        out("Package lists updated.")
        return 0
    if isinstance(op, ops.FinalizeDeployment):
        assert result.deployment is not None
        out(f"Finalizing {result.deployment.id} and rebooting.")
        return 0
    if json_output:
        out(json.dumps([{"name": n, "version": v, "summary": s} for n, v, s in result.found], indent=2))
        return 0 if result.found else 1
    for name, version, summary in result.found:
        out(f"{name} {version}: {summary}")
    if not result.found:
        out("No matches.")
        return 1
    return 0
