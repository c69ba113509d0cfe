"""APT sources as APT reads them: one-line ``.list`` and deb822 ``.sources`` files, nothing dropped.

Every entry becomes an :class:`AptRepo` in deb822 terms (sources.list(5)): Types, URIs, Suites,
Components (none for a flat repository, whose suite ends in ``/``), Signed-By when it names a
keyring file, and every other field or one-line option kept verbatim in ``options`` (``Trusted``,
``Architectures``, ``Check-Valid-Until``, an inline Signed-By key, fields APT may add later: APT
ignores options it does not know, and so do we, by passing them on). apt-ostree writes sources
back as deb822 stanzas (:func:`deb822_text`), which both APT and mmdebstrap read. ``Enabled: no``
entries are skipped; apt-ostree only ever fetches binary packages, so only ``deb`` types are kept.
libapt's own parser checks the files first (:func:`apt_ostree.core.apt.check_sources`), so a
malformed file is reported in APT's words, naming the file and the entry.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from apt_ostree.errors import AptError

# one-line option -> deb822 field (sources.list(5)); "opt+=" and "opt-=" add "-Add" / "-Remove"
ONE_LINE_OPTIONS = {
    "arch": "Architectures", "lang": "Languages", "target": "Targets", "pdiffs": "PDiffs",
    "by-hash": "By-Hash", "allow-insecure": "Allow-Insecure", "allow-weak": "Allow-Weak",
    "allow-downgrade-to-insecure": "Allow-Downgrade-To-Insecure", "trusted": "Trusted",
    "signed-by": "Signed-By", "check-valid-until": "Check-Valid-Until", "valid-until-min": "Valid-Until-Min",
    "valid-until-max": "Valid-Until-Max", "check-date": "Check-Date", "date-max-future": "Date-Max-Future",
    "inrelease-path": "InRelease-Path", "snapshot": "Snapshot",
}
CORE_FIELDS = ("types", "uris", "suites", "components", "signed-by", "enabled")


@dataclass(frozen=True)
class AptRepo:
    """One APT source entry, in deb822 terms."""

    uris: tuple[str, ...]
    suites: tuple[str, ...]
    components: tuple[str, ...] = ("main",)
    signed_by: Path | None = None  # a keyring file; fingerprints and inline keys stay in options
    options: tuple[tuple[str, str], ...] = ()  # every other field, verbatim
    where: str = field(default="", compare=False)  # "FILE:LINE" or "FILE (stanza N)", for messages

    def option(self, name: str) -> str | None:
        return next((v for k, v in self.options if k.lower() == name.lower()), None)

    def with_changes(self, **changes: Any) -> AptRepo:
        return replace(self, **changes)

    def deb822(self) -> str:
        fields = [("Types", "deb"), ("URIs", " ".join(self.uris)), ("Suites", " ".join(self.suites))]
        if self.components:
            fields.append(("Components", " ".join(self.components)))
        if self.signed_by is not None:
            fields.append(("Signed-By", str(self.signed_by)))
        fields += self.options
        return "".join(_field(k, v) for k, v in fields)

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {"uris": list(self.uris), "suites": list(self.suites),
                                "components": list(self.components)}
        if self.signed_by:
            data["signed-by"] = str(self.signed_by)
        if self.options:
            data["options"] = dict(self.options)
        return data


def _field(key: str, value: str) -> str:
    if "\n" not in value:
        return f"{key}: {value}\n"
    first, _, rest = value.partition("\n")  # continuation lines keep their leading space
    return f"{key}:\n {first}\n{rest}\n" if first else f"{key}:\n{rest}\n"


def deb822_text(repos: Iterable[AptRepo]) -> str:
    return "\n".join(r.deb822() for r in repos)


def _signed_by(value: str) -> tuple[Path | None, str | None]:
    """A single absolute keyring path, or the value to keep as an option (fingerprints, a key)."""
    words = value.split()
    if len(words) == 1 and words[0].startswith("/"):
        return Path(words[0]), None
    return None, value


# ------------------------------------------------------------------ one-line format


def _words(line: str, where: str) -> tuple[str, list[str], list[str]]:
    """``type [options] rest...`` -> (type, option words, other words); brackets may hold spaces."""
    head, _, tail = line.partition(" ")
    tail = tail.strip()
    options: list[str] = []
    if tail.startswith("["):
        inside, sep, after = tail[1:].partition("]")
        if not sep:
            raise AptError(f"APT source {where}: unterminated option list '['")
        options, tail = inside.split(), after.strip()
    return head, options, tail.split()


def parse_one_line(text: str, path: str = "sources.list") -> list[AptRepo]:
    repos = []
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.split("#", 1)[0].replace("\t", " ").strip()
        if not line:
            continue
        where = f"{path}:{number}"
        kind, option_words, rest = _words(line, where)
        if kind != "deb":
            continue  # deb-src: apt-ostree never fetches sources
        if len(rest) < 2:
            raise AptError(f"APT source {where}: expected 'deb [options] URI SUITE [COMPONENT...]': {line}")
        options: dict[str, str] = {}
        for word in option_words:
            key, sep, value = word.partition("=")
            if not sep or not key:
                raise AptError(f"APT source {where}: option {word!r} is not KEY=VALUE")
            suffix = ""
            if key[-1] in "+-":
                key, suffix = key[:-1], "-Add" if key[-1] == "+" else "-Remove"
            name = ONE_LINE_OPTIONS.get(key, "-".join(p.capitalize() for p in key.split("-"))) + suffix
            options[name] = value.replace(",", " ") if name != "Trusted" else value
        signed, keep = _signed_by(options.pop("Signed-By", "")) if "Signed-By" in options else (None, None)
        if keep is not None:
            options["Signed-By"] = keep
        repos.append(AptRepo((rest[0],), (rest[1],), tuple(rest[2:]), signed, tuple(options.items()), where))
    return repos


# ------------------------------------------------------------------ deb822 format


def _stanzas(text: str) -> Iterator[list[str]]:
    lines: list[str] = []
    for raw in text.splitlines():
        if raw.lstrip().startswith("#"):
            continue
        if raw.strip():
            lines.append(raw)
        elif lines:
            yield lines
            lines = []
    if lines:
        yield lines


def parse_deb822(text: str, path: str = "x.sources") -> list[AptRepo]:
    from apt_ostree.core.apt import tag_section  # (core/apt.py imports this module)

    repos = []
    for number, lines in enumerate(_stanzas(text), 1):
        where = f"{path} (stanza {number})"
        fields: Mapping[str, str] = tag_section("\n".join(lines) + "\n")
        lower = {k.lower(): (k, v) for k, v in fields.items()}
        if lower.get("enabled", ("", "yes"))[1].strip().lower() == "no":
            continue
        if "deb" not in lower.get("types", ("", ""))[1].split():
            continue
        for name in ("uris", "suites"):
            if not lower.get(name, ("", ""))[1].split():
                raise AptError(f"APT source {where}: no {name.capitalize()} field")
        signed, keep = _signed_by(lower["signed-by"][1]) if "signed-by" in lower else (None, None)
        options = [(k, v) for key, (k, v) in lower.items() if key not in CORE_FIELDS]
        if keep is not None:
            options.insert(0, ("Signed-By", keep))
        repos.append(AptRepo(tuple(lower["uris"][1].split()), tuple(lower["suites"][1].split()),
                             tuple(lower.get("components", ("", ""))[1].split()), signed, tuple(options), where))
    return repos


def read_sources(etc_apt: Path) -> list[AptRepo]:
    """The entries of ``etc_apt``'s sources.list and sources.list.d/*.list|*.sources, in APT's order
    (other files there are ignored, as APT ignores them)."""
    files = [etc_apt / "sources.list", *sorted((etc_apt / "sources.list.d").glob("*"))]
    repos: list[AptRepo] = []
    for f in files:
        name = str(f)
        if f.suffix == ".list" and f.is_file():
            repos += parse_one_line(f.read_text(), name)
        elif f.suffix == ".sources" and f.is_file():
            repos += parse_deb822(f.read_text(), name)
    return repos


def map_release(repos: Iterable[AptRepo], host: str, target: str) -> tuple[AptRepo, ...]:
    """The host's sources for another release: suites ``HOST`` and ``HOST-*`` become ``TARGET`` and
    ``TARGET-*`` (bookworm-security -> trixie-security); suites of other names (a third-party
    repository built for the host's release) are left out. AptError when nothing is named after it."""
    repos = tuple(repos)
    if host == target:
        return repos
    out = []
    for r in repos:
        suites = tuple(target + s[len(host):] for s in r.suites if s == host or s.startswith(f"{host}-"))
        if suites:
            out.append(r.with_changes(suites=suites))
    if not out:
        raise AptError(f"cannot use the host's APT sources for release {target!r}: no suite is named after "
                       f"the host's release {host!r}", hint="add a repos: list to the treefile")
    return tuple(out)


def host_release(os_release: Path = Path("/etc/os-release")) -> str | None:
    """The host's release codename (VERSION_CODENAME in os-release)."""
    try:
        text = os_release.read_text()
    except OSError:
        return None
    for line in text.splitlines():
        key, _, value = line.partition("=")
        if key == "VERSION_CODENAME":
            return value.strip().strip('"') or None
    return None
