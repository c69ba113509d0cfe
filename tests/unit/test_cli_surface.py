"""The CLI's surface agrees with its argument parser: the bash completion (generated from it) offers
exactly the options each verb accepts, and the man page has a section for every verb, titled with
the synopsis generated from the parser (other sections of a verb name only options it accepts)."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from apt_ostree.cli import surface
from apt_ostree.cli.main import build_parser

pytestmark = pytest.mark.unit

TOP = Path(__file__).resolve().parents[2]
SCRIPT = TOP / "completion/apt-ostree"
MAN = TOP / "man/apt-ostree.8"
VERBS = dict(surface.verbs(build_parser()))

# bash-completion's two helpers the script uses, reduced to what they do for it
HELPERS = """
_init_completion() { words=("${COMP_WORDS[@]}"); cword=$COMP_CWORD; cur=${words[cword]}; prev=${words[cword-1]}; }
_filedir() { COMPREPLY=("<files${1:+ $1}>"); }
"""


def test_completion_is_generated_from_the_parser() -> None:
    assert SCRIPT.read_text() == surface.bash(build_parser()), "run: make completion"


def complete(*words: str) -> list[str]:
    line = ["apt-ostree", *words]
    script = (HELPERS + SCRIPT.read_text() + "\nCOMP_WORDS=(" + " ".join(f"'{w}'" for w in line) + ")"
              f"\nCOMP_CWORD={len(line) - 1}\n_apt_ostree\nprintf '%s\\n' \"${{COMPREPLY[@]}}\"\n")
    done = subprocess.run(["bash", "-c", script], capture_output=True, text=True, check=True)
    return done.stdout.split("\n")[:-1]


@pytest.mark.parametrize("path", sorted(VERBS))
def test_completion_offers_exactly_the_verbs_options(path: str) -> None:
    parser = VERBS[path]
    words = path.split()
    if surface.subcommands(parser):
        assert complete(*words, "") == surface.subcommands(parser)
    else:
        offered = complete(*words, "-")
        assert sorted(offered) == sorted(surface.options(parser))


def test_completion_values() -> None:
    assert complete("") == [*surface.subcommands(build_parser()), *surface.options(build_parser())]
    assert complete("db", "diff", "--format", "") == ["block", "diff", "json"]
    assert complete("compose", "disk-image", "--format", "") == ["raw", "qcow2"]
    assert complete("install", "--sysroot", "") == ["<files -d>"]
    assert complete("install", "ht") == ["<files deb>"]
    assert complete("compose", "tree", "ex") == ["<files y?(a)ml>"]


def _man_titles() -> dict[str, list[str]]:
    """verb path -> its .SS lines, in order."""
    titles: dict[str, list[str]] = {}
    for line in MAN.read_text().splitlines():
        if line.startswith(".SS "):
            titles.setdefault(_path(line), []).append(line)
    return titles


def _path(line: str) -> str:
    path = []
    for w in line[4:].replace("\\-", "-").split():
        if not re.fullmatch(r"[a-z][a-z-]*", w):
            break
        path.append(w)
    return " ".join(path)


def test_man_page_titles_are_the_generated_synopses() -> None:
    titles = _man_titles()
    for path, parser in VERBS.items():
        if surface.subcommands(parser) or path not in titles:
            continue  # (aliases: test below)
        assert titles[path][0] == surface.synopsis(path, parser), "run the man page update (see surface.synopsis)"


def _man_sections() -> dict[str, list[str]]:
    """verb path -> the options its .SS synopses name."""
    sections: dict[str, list[str]] = {}
    for line in MAN.read_text().splitlines():
        if not line.startswith(".SS "):
            continue
        words = line[4:].replace("\\-", "-").split()
        path = []
        for w in words:
            if not re.fullmatch(r"[a-z][a-z-]*", w):
                break
            path.append(w)
        name = " ".join(path)
        flags = re.findall(r"(?<![\w-])(--?[a-zA-Z][\w-]*)", " ".join(words[len(path):]))
        sections.setdefault(name, []).extend(flags)
    return sections


def test_man_page_has_every_verb_and_only_real_options() -> None:
    sections = _man_sections()
    leaves = {p for p, parser in VERBS.items() if not surface.subcommands(parser)}
    aliases = {p for p in leaves if any(VERBS[p] is VERBS[q] for q in sections)}  # remove = uninstall
    assert sorted(leaves - set(sections) - aliases) == []
    for name, flags in sections.items():
        assert name in VERBS, f"man page section for an unknown verb: {name!r}"
        accepted = set(surface.options(VERBS[name]))
        assert sorted(set(flags) - accepted) == [], f"man page synopsis of {name!r} names options it does not take"


def test_man_synopses_are_rewritten_from_the_parser() -> None:
    """make generated's man page step: the page is current, and a stale synopsis is made anew."""
    parser = build_parser()
    text = MAN.read_text()
    assert surface.man(text, parser) == text
    stale = text.replace(surface.synopsis("rollback", VERBS["rollback"]), ".SS rollback [\\-\\-gone]")
    assert stale != text and surface.man(stale, parser) == text
