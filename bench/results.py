"""Append benchmark rows to their own table in docs/benchmarks.md (shared by the bench scripts)."""

from __future__ import annotations

from pathlib import Path

RESULTS = Path(__file__).resolve().parent.parent / "docs/benchmarks.md"
HEADER = "| date | what | apt-ostree | baseline | ratio | runs |\n|---|---|---|---|---|---|\n"


def add_rows(marker: str, section: str, rows: list[str], path: Path = RESULTS) -> None:
    """Add ``rows`` at the end of the table that follows ``marker``; create the section if missing."""
    text = path.read_text() if path.exists() else "# Benchmarks\n"
    if marker not in text:
        text = text.rstrip("\n") + f"\n\n{section}\n\n{marker}\n{HEADER}"
    head, tail = text.split(marker, 1)
    lines = tail.split("\n")
    end = 1
    while end < len(lines) and lines[end].startswith("|"):
        end += 1
    lines[end:end] = rows
    path.write_text(head + marker + "\n".join(lines).rstrip("\n") + "\n")
