"""What a composed commit says about itself: input hash, version, package list.

Key names follow rpm-ostree's where one exists (``ostree.bootable``,
``ostree.linux``, ``version``); apt-ostree's own keys are prefixed
``apt-ostree.``.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping
from pathlib import Path

from apt_ostree import __version__
from apt_ostree.core.treefile import Treefile

KEY_SOURCES = "apt-ostree.sources"
KEY_INPUTHASH = "apt-ostree.inputhash"
KEY_VERSION = "version"
# Bump when compose's output for the same inputs changes.
COMPOSE_FORMAT = 1


def _file_digest(path: Path) -> str:
    h = hashlib.sha256()
    if path.is_dir():
        for p in sorted(path.rglob("*")):
            h.update(str(p.relative_to(path)).encode() + b"\0")
            if p.is_symlink():
                h.update(b"->" + os.readlink(p).encode())
            elif p.is_file():
                h.update(p.read_bytes())
    else:
        h.update(path.read_bytes())
    return h.hexdigest()


def input_hash(treefile: Treefile, *, arch: str, sources: str, release_digest: str,
               extra_metadata: Mapping[str, str]) -> str:
    """A digest of everything a compose's result depends on, not of where files live."""
    data = treefile.to_json()
    data.pop("include", None)
    data["repos"] = None  # represented by the sources text below
    data["packages-local"] = [_file_digest(p) for p in treefile.packages_local]
    data["postprocess-script"] = _file_digest(treefile.postprocess_script) if treefile.postprocess_script else None
    data["add-files"] = [[_file_digest(src), dest] for src, dest in treefile.add_files]
    keyrings = sorted({str(r.signed_by) for r in treefile.repos or () if r.signed_by})
    blob = {
        "compose-format": COMPOSE_FORMAT,
        "apt-ostree": __version__,
        "arch": arch,
        "treefile": data,
        "sources": sources,
        "keyrings": [_file_digest(Path(k)) for k in keyrings],
        "release": release_digest,
        "metadata": dict(sorted(extra_metadata.items())),
    }
    return hashlib.sha256(json.dumps(blob, sort_keys=True).encode()).hexdigest()


def next_version(prefix: str, previous: str | None) -> str:
    """rpm-ostree's automatic-version-prefix: PREFIX, then PREFIX.1, PREFIX.2, ..."""
    if previous == prefix:
        return f"{prefix}.1"
    if previous and previous.startswith(prefix + "."):
        tail = previous[len(prefix) + 1:]
        if tail.isdigit():
            return f"{prefix}.{int(tail) + 1}"
    return prefix
