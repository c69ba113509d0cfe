"""``apt-ostree status``: the deployments, like rpm-ostree's status (human or --json)."""

from __future__ import annotations

import argparse
import datetime
import json
from typing import Any

from apt_ostree.cli import client
from apt_ostree.cli.common import add_sysroot_arg, out
from apt_ostree.core import config
from apt_ostree.core.status import pending, status_json
from apt_ostree.core.sysroot import Sysroot
from apt_ostree.errors import EXIT_UNCHANGED

LAYER_ROWS = (("base-removals", "RemovedBasePackages"), ("base-local-replacements", "ReplacedBasePackages"),
              ("packages", "LayeredPackages"), ("requested-local-packages", "LocalPackages"),
              ("inactive-requests", "InactiveRequests"))


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    st = sub.add_parser("status", help="show the deployments")
    add_sysroot_arg(st)
    st.add_argument("--json", action="store_true", help="machine-readable output (rpm-ostree's keys)")
    st.add_argument("-b", "--booted", action="store_true", help="only the booted deployment")
    st.add_argument("-v", "--verbose", action="store_true", dest="status_verbose", help="more details")
    st.add_argument("--pending-exit-77", action="store_true", help="exit 77 if a pending deployment exists")
    st.set_defaults(func=run_status)


def _when(ts: int) -> str:
    return datetime.datetime.fromtimestamp(ts, datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def render(data: dict[str, Any], verbose: bool) -> list[str]:
    transaction = data.get("transaction")
    lines = [f"State: {'busy' if transaction else 'idle'}"]
    if transaction:
        lines.append(f"Transaction: {transaction[0]}")
        lines.append(f"  Initiator: {transaction[1]}")
    if data.get("automatic-update-policy"):
        policy = data["automatic-update-policy"]
        lines.append(f"AutomaticUpdates: {'disabled' if policy == 'none' else policy}")
    update = data.get("cached-update")
    if update:
        lines.append("AvailableUpdate:")
        if update.get("version"):
            lines.append(f"{'Version':>26}: {update['version']} ({_when(update['timestamp'])})")
        else:
            lines.append(f"{'Timestamp':>26}: {_when(update['timestamp'])}")
        lines.append(f"{'Commit':>26}: {update['checksum']}")
    start = data.get("changes-build-on")
    if start:
        pending = next((d for d in data["deployments"] if d["id"] == start), None)
        what = "the staged deployment" if pending and pending["staged"] else "the pending deployment"
        lines.append(f"Changes build on: {what} {start} (apt-ostree cleanup -p drops it)")
    failure = data.get("finalization-failure")
    if failure:
        staged = failure.get("staged")
        what = f"the staged deployment {staged['checksum'][:12]}" if staged else "the staged deployment"
        lines.append(f"Warning: {what} did not finalize at the last shutdown: {failure['reason']}")
        if staged:
            asked = [*staged.get("requested-packages", []), *staged.get("requested-local-packages", [])]
            if asked:
                lines.append(f"  It had these packages: {' '.join(asked)}")
            lines.append(f"  Its kernel arguments: {staged.get('kernel-arguments', '')}")
        lines.append("  The booted deployment is the one before it; make the change again once the cause is fixed")
    lines.append("Deployments:")
    for d in data["deployments"]:
        mark = "●" if d["booted"] else " "
        lines.append(f"{mark} {d.get('container-image-reference') or d['origin'] or d['checksum']}")
        rows: list[tuple[str, str]] = []
        if d.get("container-image-reference-digest"):
            rows.append(("Digest", d["container-image-reference-digest"]))
        if d["version"]:
            rows.append(("Version", f"{d['version']} ({_when(d['timestamp'])})"))
        else:
            rows.append(("Timestamp", _when(d["timestamp"])))
        if d.get("base-checksum"):
            rows.append(("BaseCommit", d["base-checksum"]))
        rows.append(("Commit", d["checksum"]))
        if d["staged"]:
            rows.append(("Staged", "yes" + (" (finalization locked)" if d["finalization-locked"] else "")))
        if d.get("boot-failed"):
            rows.append(("BootFailed", "yes: it did not reach boot-complete.target, the previous deployment "
                                       "was booted instead (apt-ostree rollback makes that the default)"))
        if d["pinned"]:
            rows.append(("Pinned", "yes"))
        if d.get("unlocked", "none") != "none":
            rows.append(("Unlocked", d["unlocked"]))
        if d.get("live-inprogress"):
            rows.append(("InterruptedLiveCommit", f"{d['live-inprogress']} (apt-ostree apply-live completes it, "
                                                  "--reset undoes it)"))
        if d.get("live-replaced"):
            rows += [("LiveCommit", d["live-replaced"]), ("LiveDiff", d.get("live-diff", ""))]
        if d.get("regenerate-initramfs"):
            rows.append(("Initramfs", " ".join(["regenerate", *d.get("initramfs-args", [])])))
        if d.get("initramfs-etc"):
            rows.append(("InitramfsEtc", " ".join(d["initramfs-etc"])))
        if d.get("image-derived-packages"):
            rows.append(("ImagePackages", ", ".join(d["image-derived-packages"]) + " (added FROM the image)"))
        for key, title in LAYER_ROWS:
            values = d.get(key) or []
            if values:
                if key == "base-removals":
                    text = ", ".join(" ".join(v.split()[:2]) for v in values)
                elif key == "base-local-replacements":
                    text = ", ".join(f"{n} {old} -> {new}" for n, old, new, _ in values)
                else:
                    text = " ".join(values)
                rows.append((title, text))
        if verbose:
            rows += [("StateRoot", d["osname"]), ("Deployment", d["id"]), ("Kernel arguments", d["kernel-arguments"])]
        lines += [f"{k:>26}: {v}" for k, v in rows]
        lines.append("")
    return lines[:-1] if lines[-1] == "" else lines


def run_status(args: argparse.Namespace) -> int:
    sysroot = Sysroot.open(args.sysroot)
    data = status_json(sysroot)
    merge = sysroot.merge_deployment() if data["deployments"] else None
    if merge is not None:
        data["automatic-update-policy"] = config.of_deployment(merge.path).automatic_update_policy
    data["transaction"] = client.active_transaction(args.sysroot)
    if args.booted:
        booted = [d for d in data["deployments"] if d["booted"]] or data["deployments"][:1]
        data["deployments"] = booted
    if args.json:
        out(json.dumps(data, indent=2))
    else:
        for line in render(data, args.status_verbose):
            out(line)
    if args.pending_exit_77 and pending(sysroot):
        return EXIT_UNCHANGED
    return 0
