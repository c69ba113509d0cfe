"""The CLI's surface outside Python, derived from the argument parser: the bash completion script
and the man page's synopses.

completion/apt-ostree is ``bash()``'s output (``make completion`` writes it) and the first ``.SS``
line of each verb in man/apt-ostree.8 is ``synopsis()``'s; unit tests fail when either is not current,
so both offer exactly the options argparse accepts, verb by verb.
"""

from __future__ import annotations

import argparse
import itertools
import re
import shlex
from collections.abc import Iterator

# what an option's value or a verb's positional arguments complete to (anything else: nothing)
DIRECTORY_OPTIONS = {"--repo", "--cachedir", "--sysroot"}
FILE_OPTIONS = {"--write-commitid-to", "--root-ssh-key", "--config"}
POSITIONAL_FILES = {"install": "deb", "override replace": "deb", "compose tree": "y?(a)ml",
                    "compose disk-image": ""}


def verbs(parser: argparse.ArgumentParser, prefix: str = "") -> Iterator[tuple[str, argparse.ArgumentParser]]:
    """(path, parser) of every verb and verb group: "status", "compose", "compose tree"..."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                path = f"{prefix} {name}".strip()
                yield path, sub
                yield from verbs(sub, path)


def subcommands(parser: argparse.ArgumentParser) -> list[str]:
    return [name for a in parser._actions if isinstance(a, argparse._SubParsersAction) for name in a.choices]


def options(parser: argparse.ArgumentParser) -> list[str]:
    """Every option string the parser accepts."""
    return [s for a in parser._actions for s in a.option_strings]


def _words(items: list[str]) -> str:
    return shlex.quote(" ".join(items))


def _value_cases(parser: argparse.ArgumentParser) -> list[str]:
    cases = []
    for a in parser._actions:
        if not a.option_strings or a.nargs == 0:
            continue
        names = "|".join(a.option_strings)
        if a.choices:
            cases.append(f"{names}) COMPREPLY=($(compgen -W {_words([str(c) for c in a.choices])} -- \"$cur\"));"
                         " return ;;")
        elif set(a.option_strings) & DIRECTORY_OPTIONS:
            cases.append(f"{names}) _filedir -d; return ;;")
        elif set(a.option_strings) & FILE_OPTIONS:
            cases.append(f"{names}) _filedir; return ;;")
        else:
            cases.append(f"{names}) return ;;")
    return cases


def bash(parser: argparse.ArgumentParser) -> str:
    groups = [path for path, p in verbs(parser) if subcommands(p)]
    out = [
        "# bash completion for apt-ostree                           -*- shell-script -*-",
        "# Generated from apt-ostree's argument parser by apt_ostree/cli/completion.py (make completion).",
        "",
        "_apt_ostree()",
        "{",
        "    local cur prev words cword",
        "    _init_completion || return",
        "",
        f"    local groups={shlex.quote(' ' + ' '.join(groups) + ' ')}",
        '    local i verb=""',
        "    for ((i = 1; i < cword; i++)); do",
        '        case ${words[i]} in',
        "            -*) ;;",
        '            *) if [[ -z $verb ]]; then verb=${words[i]};',
        '               elif [[ $groups == *" $verb "* && $verb != *" "* ]]; then verb="$verb ${words[i]}"; fi ;;',
        "        esac",
        "    done",
        "",
        '    case $verb in',
        '        "")',
        f'            COMPREPLY=($(compgen -W {_words([*subcommands(parser), *options(parser)])} -- "$cur")) ;;',
    ]
    for path, p in verbs(parser):
        out.append(f'        "{path}")')
        cases = _value_cases(p)
        if cases:
            out.append("            case $prev in")
            out += [f"                {c}" for c in cases]
            out.append("            esac")
        subs = subcommands(p)
        opts = _words(options(p))
        if subs:
            out.append(f'            COMPREPLY=($(compgen -W {_words(subs)} -- "$cur")) ;;')
        elif POSITIONAL_FILES.get(path):
            out.append(f'            if [[ $cur == -* ]]; then COMPREPLY=($(compgen -W {opts} -- "$cur"));')
            out.append(f"            else _filedir {shlex.quote(POSITIONAL_FILES[path])}; fi ;;")
        elif path in POSITIONAL_FILES:
            out.append(f'            if [[ $cur == -* ]]; then COMPREPLY=($(compgen -W {opts} -- "$cur"));')
            out.append("            else _filedir; fi ;;")
        else:
            out.append(f'            COMPREPLY=($(compgen -W {opts} -- "$cur")) ;;')
    out += ["    esac", "} &&", "    complete -F _apt_ostree apt-ostree", "", "# ex: filetype=sh", ""]
    return "\n".join(out)


def _usage(a: argparse.Action) -> str:
    value = a.metavar or (a.dest.upper() if a.option_strings else a.dest)
    if not a.option_strings:
        return {"?": f"[{value}]", "*": f"[{value}...]", "+": f"{value}..."}.get(str(a.nargs), str(value))
    if a.choices:
        value = "|".join(str(c) for c in a.choices)
    names = "|".join(a.option_strings)
    text = names if a.nargs == 0 else f"{names}={value}"
    return text if a.required else f"[{text}]"


def synopsis(path: str, parser: argparse.ArgumentParser) -> str:
    """The verb's man page section title: ``.SS``, the verb, its options and its arguments (roff)."""
    parts = [path] + [_usage(a) for a in parser._actions if a.option_strings and "--help" not in a.option_strings]
    parts += [_usage(a) for a in parser._actions
              if not a.option_strings and not isinstance(a, argparse._SubParsersAction)]
    return ".SS " + " ".join(parts).replace("-", "\\-")


def man(text: str, parser: argparse.ArgumentParser) -> str:
    """The man page ``text`` with each verb's first ``.SS`` line made its synopsis anew."""
    parsers = {path: p for path, p in verbs(parser) if not subcommands(p)}
    seen: set[str] = set()
    lines = text.splitlines(keepends=True)
    for i, line in enumerate(lines):
        if not line.startswith(".SS "):
            continue
        path = " ".join(w for w in itertools.takewhile(lambda w: re.fullmatch(r"[a-z][a-z-]*", w) is not None,
                                                       line[4:].replace("\\-", "-").split()))
        if path in parsers and path not in seen:
            seen.add(path)
            lines[i] = synopsis(path, parsers[path]) + "\n"
    return "".join(lines)


def main() -> None:
    """Print the bash completion; with ``--man PAGE``, write the man page's synopses anew."""
    import sys

    from apt_ostree.cli.main import build_parser

    if sys.argv[1:2] == ["--man"]:
        page = sys.argv[2]
        with open(page) as f:
            text = man(f.read(), build_parser())
        with open(page, "w") as f:
            f.write(text)
        return
    print(bash(build_parser()), end="")


if __name__ == "__main__":
    main()
