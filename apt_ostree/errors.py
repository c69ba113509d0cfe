"""Typed errors. Each carries a one-line message and an optional hint.

Only the CLI entry point (and later the daemon's error mapper) turns them into
output and exit codes; everything else raises.
"""

from __future__ import annotations

EXIT_UNCHANGED = 77  # --unchanged-exit-77, status --pending-exit-77 (as rpm-ostree)
EXIT_CANCELLED = 130  # cancelled or interrupted (128 + SIGINT)


class AptOstreeError(Exception):
    """Base class: a failure the user can act on."""

    exit_code = 1

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return self.message


class UsageError(AptOstreeError):
    """Bad command-line use."""

    exit_code = 2


class TreefileError(AptOstreeError):
    """A treefile is invalid; the message names the file and key path."""


class CommandError(AptOstreeError):
    """A subprocess failed; the hint carries the tail of its stderr."""

    def __init__(self, message: str, hint: str | None = None, returncode: int = 1) -> None:
        super().__init__(message, hint)
        self.returncode = returncode


class RepoError(AptOstreeError):
    """An OSTree repository could not be read or written, or a revision is unknown."""


class SysrootBusy(RepoError):
    """Another command or transaction holds the sysroot's lock."""


class AptError(AptOstreeError):
    """APT sources or packages are unusable (unreachable, unsigned, unknown package)."""


class UnknownPackage(AptError):
    """A requested package is in none of the configured APT sources."""

    def __init__(self, name: str, message: str, hint: str | None = None) -> None:
        super().__init__(message, hint)
        self.name = name


class LayeringError(AptOstreeError):
    """Packages cannot be layered as requested (conflict with the base, failing maintainer script)."""


class ComposeError(AptOstreeError):
    """The composed tree is not what an OSTree system needs."""


class ImageError(AptOstreeError):
    """A container image cannot be written, read or deployed (format, labels, registry, lint)."""


class Cancelled(AptOstreeError):
    """The operation was cancelled by its caller."""

    exit_code = EXIT_CANCELLED


class DaemonError(AptOstreeError):
    """apt-ostreed refused or failed a request."""
