"""Sandbox.argv (the bwrap command line) and run() (clean env, errors, cancellation)."""

from __future__ import annotations

import subprocess
import threading
import time
from pathlib import Path

import pytest

from apt_ostree.errors import Cancelled, CommandError
from apt_ostree.progress import Progress
from apt_ostree.run import _exited, run
from apt_ostree.sandbox import BWRAP, SANDBOX_PATH, Bind, Sandbox

pytestmark = pytest.mark.unit


def option_values(argv: list[str], option: str, n: int = 1) -> list[tuple[str, ...]]:
    """Every occurrence of ``option`` with its ``n`` arguments."""
    return [tuple(argv[i + 1:i + 1 + n]) for i, a in enumerate(argv) if a == option]


def before_command(argv: list[str]) -> list[str]:
    return argv[:argv.index("--")]


# ---------------------------------------------------------------- Sandbox.argv


def test_argv_defaults() -> None:
    argv = Sandbox(Path("/build/root")).argv(["dpkg", "--configure", "-a"])
    assert argv[:4] == [BWRAP, "--bind", "/build/root", "/"]
    opts = before_command(argv)
    assert "--unshare-net" in opts
    assert "--clearenv" in opts and "--die-with-parent" in opts
    assert option_values(opts, "--tmpfs") == [("/tmp",), ("/run",)]
    assert option_values(opts, "--chdir") == [("/",)]
    assert "--cap-add" not in opts
    assert argv[argv.index("--") + 1:] == ["dpkg", "--configure", "-a"]


def test_argv_network() -> None:
    assert "--unshare-net" not in Sandbox(Path("/r"), network=True).argv(["true"])


def test_argv_binds() -> None:
    sb = Sandbox(Path("/r"), binds=(Bind(Path("/host/cache"), "/var/cache/apt/archives"),
                                    Bind(Path("/host/debs"), "/debs", readonly=True)),
                 host_sys=True)
    opts = before_command(sb.argv(["true"]))
    assert ("/host/cache", "/var/cache/apt/archives") in option_values(opts, "--bind", 2)
    ro = option_values(opts, "--ro-bind", 2)
    assert ("/host/debs", "/debs") in ro
    assert ("/sys", "/sys") in ro


def test_argv_capabilities() -> None:
    opts = before_command(Sandbox(Path("/r"), capabilities=("SYS_ADMIN", "CAP_NET_ADMIN", "ALL")).argv(["true"]))
    assert option_values(opts, "--cap-add") == [("CAP_SYS_ADMIN",), ("CAP_NET_ADMIN",), ("ALL",)]


def test_argv_env_sorted_after_clearenv() -> None:
    sb = Sandbox(Path("/r"), env={"ZED": "1", "DEBIAN_FRONTEND": "noninteractive", "HOME": "/home/x"}, cwd="/src")
    argv = sb.argv(["make", "--", "x"])
    opts = before_command(argv)
    setenv = option_values(opts, "--setenv", 2)
    assert [k for k, _ in setenv] == sorted(k for k, _ in setenv)
    assert dict(setenv) == {"DEBIAN_FRONTEND": "noninteractive", "HOME": "/home/x", "LANG": "C.UTF-8",
                            "LC_ALL": "C.UTF-8", "PATH": SANDBOX_PATH, "ZED": "1"}
    assert opts.index("--clearenv") < opts.index("--setenv")
    assert option_values(opts, "--chdir") == [("/src",)]
    # The command, including its own "--", comes untouched after the first "--".
    assert argv[argv.index("--") + 1:] == ["make", "--", "x"]


# ---------------------------------------------------------------- run()


def test_run_capture() -> None:
    result = run(["sh", "-c", "echo out; echo err >&2"], capture=True)
    assert result.returncode == 0
    assert result.stdout == "out\n"
    assert result.stderr_tail == ("err",)
    assert result.argv == ("sh", "-c", "echo out; echo err >&2")


def test_run_stdin_and_cwd(tmp_path: Path) -> None:
    assert run(["cat"], capture=True, stdin_text="hello\n").stdout == "hello\n"
    assert run(["pwd"], capture=True, cwd=tmp_path).stdout.strip() == str(tmp_path)


def test_run_failure() -> None:
    script = "echo 'E: first error' >&2; echo 'dpkg: error processing foo' >&2; echo 'done.' >&2; exit 3"
    with pytest.raises(CommandError) as info:
        run(["/bin/sh", "-c", script])
    e = info.value
    assert e.returncode == 3
    assert "sh failed (exit code 3)" in e.message
    assert e.message.endswith("dpkg: error processing foo")
    assert e.hint is not None and e.hint.splitlines()[-1] == "done."


def test_run_failure_uses_what() -> None:
    with pytest.raises(CommandError, match=r"^apt-get update failed \(exit code 1\)$"):
        run(["false"], what="apt-get update")


def test_run_no_check() -> None:
    assert run(["false"], check=False).returncode == 1


def test_run_clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FOO_TEST", "leaked")
    env = run(["env"], capture=True, env={"BAR_TEST": "given"}).stdout.splitlines()
    assert not any(line.startswith("FOO_TEST=") for line in env)
    assert "BAR_TEST=given" in env
    assert "LC_ALL=C.UTF-8" in env


def test_run_output_goes_to_progress() -> None:
    lines: list[str] = []

    class Recorder(Progress):
        def output(self, line: str) -> None:
            lines.append(line)

    run(["sh", "-c", "echo one; echo two >&2"], progress=Recorder())
    assert sorted(lines) == ["one", "two"]


def test_run_cancelled_before_start(tmp_path: Path) -> None:
    progress = Progress()
    progress.cancel()
    marker = tmp_path / "ran"
    with pytest.raises(Cancelled):
        run(["touch", str(marker)], progress=progress)
    assert not marker.exists()


def test_run_cancelled_while_running() -> None:
    progress = Progress()
    timer = threading.Timer(0.3, progress.cancel)
    timer.start()
    start = time.monotonic()
    try:
        with pytest.raises(Cancelled, match="sleep"):
            run(["sleep", "30"], progress=progress)
    finally:
        timer.cancel()
    assert time.monotonic() - start < 5


def test_exited_waits_for_the_child_and_reaps_it() -> None:
    proc = subprocess.Popen(["sleep", "30"], text=True)
    try:
        assert _exited(proc, 0.05) is False  # still running: the timeout passes
        assert proc.returncode is None
    finally:
        proc.kill()
    assert _exited(proc, 30) is True  # woken by the exit (pidfd), reaped
    assert proc.returncode == -9
    assert _exited(proc, 0) is True  # already reaped: no pidfd to open, Popen knows
