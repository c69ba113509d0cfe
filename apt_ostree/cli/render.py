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
from apt_ostree.verbs import Verb


def run_op(args: argparse.Namespace, verb: Verb, op: ops.Op, automatic: bool = False) -> int:
    """Run ``op``, the request of the row ``verb``, and render its result (``automatic``: the
    daemon's AutomaticUpdatePolicy decides what the upgrade is)."""
    op.validate()
    if verb.changes and client.wants_daemon(args):
        ran = client.run(args, verb, op, automatic)
        if ran is None:
            out("Automatic updates are not enabled.")
            return 0
        op, result = ran
    else:
        result = execute(op, args.sysroot, progress_for(args))
    return render(verb, op, result, json_output=bool(getattr(args, "json", False)))


def _unchanged(op: ops.Op, message: str) -> int:
    out(message)
    return EXIT_UNCHANGED if getattr(op, "unchanged_exit_77", False) else 0


def _text(template: str, op: ops.Op, result: ops.Result) -> str:
    return template.format(op=op, result=result)


def _diff(result: ops.Result) -> None:
    if result.diff is not None:
        for line in diff_lines(result.diff):
            out(line)


def _live(live: ops.LiveResult, diff: bool) -> None:
    if live.completed:
        out(f"Completed the interrupted apply-live of {live.completed}.")
    if diff and live.diff is not None:
        for line in diff_lines(live.diff):
            out(line)
    out(f"Successfully updated running filesystem tree ({live.files} paths); it matches {live.target}.")
    if live.etc_kept:
        out(f"Kept, changed on this system: {', '.join(live.etc_kept)}")
    if live.daemon_reload:
        out("Units changed: systemd reloaded them (systemctl daemon-reload).")
    if live.restarted:
        out(f"Restarted: {', '.join(live.restarted)}")
    elif live.services:
        out(f"Changed and running, may need a restart: {', '.join(live.services)} (or use --restart-services)")


def _finish(result: ops.Result) -> int:
    d = result.deployment
    if result.container_root:
        out("Changed this container's root: an image built from it has the packages as its own.")
    if d is not None:
        out(f"{'Staged' if d.staged else 'Deployed'}: {d.id}")
    if result.live is not None:
        _live(result.live, diff=result.diff is None)
        return 0
    if d is not None and result.booted:
        out("Rebooting." if result.rebooting else "Run \"systemctl reboot\" to start the new deployment.")
    return 0


def _image(op: ops.Op, result: ops.Result) -> None:
    image = result.image
    if image is None:
        return
    out(f"Image: {image.reference}" + (f" ({image.digest})" if image.digest else ""))
    if getattr(op, "check", False) or getattr(op, "preview", False):
        return
    if image.fetched_layers:
        out(f"Fetched {image.fetched_layers} of {image.layers} layers: {image.fetched_bytes / 1e6:.1f} MB "
            f"of {image.total_bytes / 1e6:.1f} MB")
    elif image.layers and result.changed:
        out(f"Fetched no layers: all {image.layers} were here already")


def _commit_line(prefix: str, result: ops.Result) -> str:
    return f"{prefix} commit: {result.checksum}" + (f" (version {result.version})" if result.version else "")


def render(verb: Verb, op: ops.Op, result: ops.Result, json_output: bool = False) -> int:
    """Print what ``op`` (a request of the row ``verb``) did, as rpm-ostree would; the exit code.
    What a verb prints besides its row's texts is decided by the result's data: a plan (dry run,
    download), a package diff, a new deployment; the few verbs with output of their own first."""
    if isinstance(op, ops.Search):
        return _found(result, json_output)
    _image(op, result)
    if not result.changed and verb.unchanged:
        return _unchanged(op, _text(verb.unchanged, op, result))
    if isinstance(op, ops.Upgrade):
        out(_commit_line("Available" if op.check or op.preview else "New", result))
        if op.check or op.download_only:
            return 0
    if isinstance(op, ops.Rebase) and op.preview:
        out(_commit_line("Available", result))
    if result.moved:
        out(f"Moving '{result.moved}' to be first deployment")
    for removed in result.removed:
        out(f"Deployment removed: {removed}")
    dry_run = bool(getattr(op, "dry_run", False))
    if result.plan is not None and (dry_run or getattr(op, "download_only", False)):
        for line in plan_lines(result.plan):
            out(line)
        out("Exiting because of '--dry-run' option" if dry_run else "Downloaded; nothing deployed.")
        return 0
    if verb.done:
        out(_text(verb.done, op, result))
    _diff(result)
    if isinstance(op, ops.Rebase) and op.preview:
        if result.plan is not None:
            out("Layered packages on the new base:")
            for line in plan_lines(result.plan):
                out(f"  {line}")
        return 0
    return 0 if getattr(op, "preview", False) else _finish(result)


def _found(result: ops.Result, json_output: bool) -> int:
    if json_output:
        out(json.dumps([{"name": n, "version": v, "summary": s} for n, v, s in result.found], indent=2))
        return 0 if result.found else 1
    for name, version, summary in result.found:
        out(f"{name} {version}: {summary}")
    if not result.found:
        out("No matches.")
        return 1
    return 0
