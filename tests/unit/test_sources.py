"""APT sources read as APT reads them (core/sources.py): one-line and deb822, every option kept,
written back as deb822 and read again by libapt; the host's sources mapped to another release."""

from __future__ import annotations

import re
import textwrap
from pathlib import Path

import pytest

from apt_ostree.core.apt import check_sources
from apt_ostree.core.sources import (
    AptRepo,
    deb822_text,
    host_release,
    map_release,
    parse_deb822,
    parse_one_line,
    read_sources,
)
from apt_ostree.errors import AptError

pytestmark = pytest.mark.unit

KEY = "-----BEGIN PGP PUBLIC KEY BLOCK-----\n .\n abc\n -----END PGP PUBLIC KEY BLOCK-----"


def test_one_line_every_form() -> None:
    text = textwrap.dedent("""\
        # comment
        deb http://deb.debian.org/debian bookworm main contrib
        deb-src http://deb.debian.org/debian bookworm main
        deb [arch=amd64,i386 signed-by=/usr/share/keyrings/x.gpg] https://x.example/debian stable main
        deb [trusted=yes] file:/srv/debs ./
        deb [ arch+=arm64 check-valid-until=no X-Custom=1 ] mirror+file:/etc/apt/mirrors.txt sid main
        deb http://security.debian.org/debian-security bookworm-security main  # trailing comment
        """)
    repos = parse_one_line(text, "/etc/apt/sources.list")
    assert repos == [
        AptRepo(("http://deb.debian.org/debian",), ("bookworm",), ("main", "contrib")),
        AptRepo(("https://x.example/debian",), ("stable",), ("main",), Path("/usr/share/keyrings/x.gpg"),
                (("Architectures", "amd64 i386"),)),
        AptRepo(("file:/srv/debs",), ("./",), (), None, (("Trusted", "yes"),)),
        AptRepo(("mirror+file:/etc/apt/mirrors.txt",), ("sid",), ("main",), None,
                (("Architectures-Add", "arm64"), ("Check-Valid-Until", "no"), ("X-Custom", "1"))),
        AptRepo(("http://security.debian.org/debian-security",), ("bookworm-security",), ("main",)),
    ]
    assert repos[2].option("trusted") == "yes" and repos[2].where == "/etc/apt/sources.list:5"


def test_deb822_every_form() -> None:
    text = textwrap.dedent("""\
        Types: deb deb-src
        URIs: http://deb.debian.org/debian http://mirror.example/debian
        Suites: bookworm bookworm-updates
        Components: main contrib
        Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
        Architectures: amd64

        Types: deb
        URIs: http://security.debian.org/debian-security
        Suites: bookworm-security
        Components: main
        Enabled: no

        Types: deb-src
        URIs: http://deb.debian.org/debian
        Suites: bookworm
        Components: main

        # a flat repository with an inline key
        Types: deb
        URIs: file:/srv/debs
        # comment inside a stanza
        Suites: ./
        Signed-By:
        """) + " " + KEY + "\n"
    first, flat = parse_deb822(text, "/etc/apt/sources.list.d/x.sources")
    assert first == AptRepo(("http://deb.debian.org/debian", "http://mirror.example/debian"),
                            ("bookworm", "bookworm-updates"), ("main", "contrib"),
                            Path("/usr/share/keyrings/debian-archive-keyring.gpg"), (("Architectures", "amd64"),))
    assert flat.signed_by is None and flat.components == () and flat.option("signed-by") == KEY
    assert flat.where == "/etc/apt/sources.list.d/x.sources (stanza 4)"


def test_written_back_libapt_reads_the_same(tmp_path: Path) -> None:
    one_line = ("deb [trusted=yes arch=amd64] file:/srv/debs ./\n"
                "deb [signed-by=/k.gpg] http://a.example/debian bookworm main contrib\n")
    deb822 = f"Types: deb\nURIs: http://b.example/debian\nSuites: sid\nComponents: main\nSigned-By:\n {KEY}\n"
    etc = tmp_path / "apt"
    (etc / "sources.list.d").mkdir(parents=True)
    (etc / "sources.list").write_text(one_line)
    (etc / "sources.list.d/b.sources").write_text(deb822)
    (etc / "sources.list.d/ignored.list.disabled").write_text("garbage\n")
    check_sources(etc)
    repos = read_sources(etc)
    assert [r.uris[0] for r in repos] == ["file:/srv/debs", "http://a.example/debian", "http://b.example/debian"]
    again = tmp_path / "again"
    (again / "sources.list.d").mkdir(parents=True)
    (again / "sources.list.d/all.sources").write_text(deb822_text(repos))
    check_sources(again)  # libapt accepts what we write
    assert read_sources(again) == repos  # and nothing was lost


def test_libapt_names_a_malformed_file(tmp_path: Path) -> None:
    etc = tmp_path / "apt"
    etc.mkdir()
    (etc / "sources.list").write_text("deb http://a.example/debian ./ main\n")
    with pytest.raises(AptError, match=r"Malformed entry 1 in list file .*sources.list \(absolute Suite Component\)"):
        check_sources(etc)


@pytest.mark.parametrize("line, message", [
    ("deb http://a.example/debian", "expected 'deb [options] URI SUITE"),
    ("deb [arch=amd64 http://a.example/debian bookworm main", "unterminated option list"),
    ("deb [trusted] http://a.example/debian bookworm main", "option 'trusted' is not KEY=VALUE"),
])
def test_one_line_errors_name_the_line(line: str, message: str) -> None:
    with pytest.raises(AptError, match="APT source /x.list:2: " + re.escape(message)):
        parse_one_line(f"# first\n{line}\n", "/x.list")


def test_map_release() -> None:
    host = [AptRepo(("http://deb.debian.org/debian",), ("bookworm", "bookworm-updates"), ("main",)),
            AptRepo(("http://deb.debian.org/debian-security",), ("bookworm-security",), ("main",)),
            AptRepo(("https://vendor.example/apt",), ("cloud-sdk-bookworm",), ("main",))]
    mapped = map_release(host, "bookworm", "trixie")
    assert [r.suites for r in mapped] == [("trixie", "trixie-updates"), ("trixie-security",)]
    assert map_release(host, "bookworm", "bookworm") == tuple(host)
    with pytest.raises(AptError, match="no suite is named after the host's release 'bookworm'"):
        map_release(host[2:], "bookworm", "trixie")


def test_host_release(tmp_path: Path) -> None:
    (tmp_path / "os-release").write_text('PRETTY_NAME="Debian GNU/Linux 13 (trixie)"\nVERSION_CODENAME=trixie\n')
    assert host_release(tmp_path / "os-release") == "trixie"
    assert host_release(tmp_path / "missing") is None
