"""Boot a disk image in QEMU and run commands in the guest over ssh (harness for the `vm` test tier).

A :class:`Guest` boots an image made by ``apt-ostree compose disk-image`` (root's authorized key is the
public half of the key given here) with user-mode networking restricted to one forwarded ssh port, so
the guest has no other network. Every wait has a hard timeout, and the context manager always leaves
no QEMU behind. The guest's serial console goes to a file; failures quote its tail.

Always TCG, never KVM: on the build hosts ``/dev/kvm`` is provided by kvm_pvm (PVM, nested
virtualisation without VMX), which can only run PVM guest kernels. A stock Debian kernel hangs there right
after ``Probing EDD`` (see /work/shared/notes/boot.md, "Blockers", item 1). Under ``-accel tcg,thread=multi``
the same kernel boots in about 60-90 s, so the timeouts here are generous.

Tests start QEMU and ssh with :mod:`subprocess` directly, as ``tests/conftest.py`` does: ``run.run()``
cannot keep a process in the background nor bound a wait by time.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

QEMU = "qemu-system-x86_64"
SERIAL_TAIL_LINES = 60
SSH_OPTIONS = (
    "-F", "/dev/null", "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
    "-o", "BatchMode=yes", "-o", "ConnectTimeout=5", "-o", "IdentitiesOnly=yes", "-o", "LogLevel=ERROR",
    "-o", "ServerAliveInterval=5", "-o", "ServerAliveCountMax=6",
)


@dataclass(frozen=True)
class Drive:
    """An extra disk for the guest, e.g. a read-only virtio disk that carries an OSTree repo."""

    path: Path
    format: str | None = None
    readonly: bool = False
    interface: str = "virtio"


def image_format(path: Path) -> str:
    """``qcow2`` or ``raw``, from the suffix or else from the qcow2 magic number."""
    if path.suffix in (".qcow2", ".raw"):
        return path.suffix[1:]
    with path.open("rb") as f:
        return "qcow2" if f.read(4) == b"QFI\xfb" else "raw"


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def make_ssh_key(directory: Path) -> tuple[Path, Path]:
    """Create (or reuse) an ed25519 key pair in ``directory``; return (private key, public key)."""
    private = directory / "id_ed25519"
    public = directory / "id_ed25519.pub"
    if not (private.exists() and public.exists()):
        directory.mkdir(parents=True, exist_ok=True)
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "apt-ostree-vm-test", "-f", str(private)],
                       stdin=subprocess.DEVNULL, capture_output=True, text=True, check=True, timeout=30)
    return private, public


class Guest:
    """A QEMU guest booted from ``disk``; use as ``with Guest(...) as g: g.wait_for_ssh(); g.run("...")``."""

    def __init__(self, disk: Path, *, ssh_key: Path, serial_log: Path, disk_format: str | None = None,
                 memory_mib: int = 2048, smp: int = 2, drives: Sequence[Drive] = (), firmware: Path | None = None,
                 qemu_args: Sequence[str] = (), network: bool = False, guestfwd: Sequence[str] = ()) -> None:
        self.disk = disk
        self.disk_format = disk_format or image_format(disk)
        self.ssh_key = ssh_key
        self.serial_path = serial_log
        self.qemu_stderr_path = serial_log.with_name(serial_log.name + ".qemu-stderr")
        self.memory_mib = memory_mib
        self.smp = smp
        self.drives = tuple(drives)
        self.firmware = firmware
        self.qemu_args = tuple(qemu_args)
        self.network = network  # False: only the forwarded ssh port (QEMU user net restrict=on)
        self.guestfwd = tuple(guestfwd)  # "tcp:10.0.2.100:80-tcp:127.0.0.1:PORT": a host server, restrict or not
        self.port = 0
        self.proc: subprocess.Popen[bytes] | None = None
        # one ssh connection that the commands share (a new one costs 2-3 s of key exchange and sshd's
        # re-exec under TCG); its socket in a short directory (the limit of a socket's path is 108 bytes)
        self.mux_dir = Path(tempfile.mkdtemp(prefix="aot-ssh-"))

    def argv(self) -> list[str]:
        """The QEMU command line (``port`` must be chosen first)."""
        argv = [QEMU, "-machine", "pc", "-accel", "tcg,thread=multi", "-m", str(self.memory_mib),
                "-smp", str(self.smp), "-nographic", "-serial", f"file:{self.serial_path}",
                "-monitor", "none", "-display", "none",
                "-drive", f"file={self.disk},format={self.disk_format},if=virtio",
                "-nic", f"user,model=virtio-net-pci,restrict={'off' if self.network else 'on'},"
                f"hostfwd=tcp:127.0.0.1:{self.port}-:22" + "".join(f",guestfwd={g}" for g in self.guestfwd)]
        for d in self.drives:
            opts = f"file={d.path},format={d.format or image_format(d.path)},if={d.interface}"
            argv += ["-drive", opts + (",readonly=on" if d.readonly else "")]
        if self.firmware is not None:
            argv += ["-bios", str(self.firmware)]
        return argv + list(self.qemu_args)

    def start(self) -> None:
        assert self.proc is None, "guest already started"
        self.port = free_port()
        self.serial_path.parent.mkdir(parents=True, exist_ok=True)
        self.serial_path.write_text("")
        with self.qemu_stderr_path.open("wb") as err:
            self.proc = subprocess.Popen(self.argv(), stdin=subprocess.DEVNULL, stdout=err, stderr=err,
                                         start_new_session=True)

    def __enter__(self) -> Guest:
        self.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.kill()

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def serial_log(self) -> str:
        """The guest's serial console output so far."""
        try:
            return self.serial_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def diagnostics(self) -> str:
        """The serial log's tail and QEMU's own messages, for failure messages."""
        tail = "\n".join(self.serial_log().splitlines()[-SERIAL_TAIL_LINES:])
        text = f"--- last {SERIAL_TAIL_LINES} lines of {self.serial_path}:\n{tail}"
        if self.qemu_stderr_path.exists() and (err := self.qemu_stderr_path.read_text(errors="replace").strip()):
            text += f"\n--- qemu stderr:\n{err[-3000:]}"
        return text

    def ssh_argv(self, cmd: str, shared: bool = False) -> list[str]:
        """ssh running ``cmd``; ``shared``: through the shared connection when there is one (else its own)."""
        return [*self._ssh_base("no" if shared else None), "root@127.0.0.1", cmd]

    def _ssh_base(self, master: str | None) -> list[str]:
        """ssh's options; ``master``: its ControlMaster (None: no shared connection at all)."""
        mux = ("-o", f"ControlPath={self.mux_dir / 'mux'}", "-o", f"ControlMaster={master}") if master else (
            "-o", "ControlPath=none")
        return ["ssh", "-i", str(self.ssh_key), "-p", str(self.port), *SSH_OPTIONS, *mux]

    def _ssh(self, cmd: str, timeout: float, input: str | None = None,
             shared: bool = False) -> subprocess.CompletedProcess[str]:
        if shared:
            self._share()
        return subprocess.run(self.ssh_argv(cmd, shared), input=input,
                              stdin=subprocess.DEVNULL if input is None else None,
                              capture_output=True, text=True, errors="replace", timeout=timeout)

    def _share(self) -> None:
        """Start the shared connection (ssh -M in the background) unless it runs; if it cannot start,
        the commands connect on their own."""
        if (self.mux_dir / "mux").exists():
            return
        master = [*self._ssh_base("yes"), "-o", "ControlPersist=no", "-f", "-N", "root@127.0.0.1"]
        try:
            subprocess.run(master, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                           timeout=60)
        except subprocess.TimeoutExpired:
            pass

    def _unshare(self) -> None:
        """Stop the shared connection (before a reboot: it would hang until the keepalives give up)."""
        if (self.mux_dir / "mux").exists():
            subprocess.run([*self._ssh_base("no"), "-O", "exit", "root@127.0.0.1"],
                           stdin=subprocess.DEVNULL, capture_output=True, timeout=30)

    def run(self, cmd: str, check: bool = True, timeout: float = 120,
            input: str | None = None) -> subprocess.CompletedProcess[str]:
        """Run shell command ``cmd`` in the guest as root; raise AssertionError if it fails and ``check``."""
        start = time.monotonic()
        try:
            proc = self._ssh(cmd, timeout, input, shared=True)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"guest command timed out after {timeout} s: {cmd}\n{self.diagnostics()}")
        finally:
            self._time(start, cmd)
        if check and proc.returncode != 0:
            raise AssertionError(f"guest command failed (exit code {proc.returncode}): {cmd}\n"
                                 f"--- stderr:\n{proc.stderr[-3000:]}\n--- stdout:\n{proc.stdout[-2000:]}")
        return proc

    def _time(self, start: float, what: str) -> None:
        """One line in ``commands.log`` beside the serial log: where the vm tier's time goes."""
        with self.serial_path.with_name("commands.log").open("a") as log:
            log.write(f"{time.monotonic() - start:7.1f} s  {what[:160]}\n")

    def _poll(self, cmd: str, accept: Callable[[subprocess.CompletedProcess[str]], bool], timeout: float,
              what: str) -> None:
        deadline = time.monotonic() + timeout
        last = ""
        while True:
            if not self.running():
                code = self.proc.returncode if self.proc is not None else None
                raise AssertionError(f"{what}: qemu is not running (exit code {code})\n{self.diagnostics()}")
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"{what}: timed out after {timeout} s (last ssh error: {last})\n"
                                     f"{self.diagnostics()}")
            try:
                proc = self._ssh(cmd, timeout=min(30.0, max(left, 5.0)))
                if accept(proc):
                    return
                last = proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else f"exit {proc.returncode}"
            except subprocess.TimeoutExpired:
                last = "ssh timed out"
            time.sleep(min(2.0, max(deadline - time.monotonic(), 0.0)))

    def wait_for_ssh(self, timeout: float = 300) -> None:
        """Wait until root can log in over ssh; raise AssertionError with the serial log if it never can."""
        start = time.monotonic()
        self._poll("true", lambda p: p.returncode == 0, timeout, "waiting for ssh")
        self._time(start, "(boot: waiting for ssh)")

    def boot_id(self) -> str:
        return self.run("cat /proc/sys/kernel/random/boot_id").stdout.strip()

    def reboot(self, timeout: float = 400, command: str = "systemctl reboot") -> None:
        """Reboot the guest (with ``command``) and wait until ssh answers from the new boot (a different boot_id)."""
        old = self.boot_id()
        self._unshare()
        try:
            self._ssh(command, timeout=30)  # the connection may drop: ignore its result
        except subprocess.TimeoutExpired:
            pass
        start = time.monotonic()
        self._poll("cat /proc/sys/kernel/random/boot_id",
                   lambda p: p.returncode == 0 and p.stdout.strip() not in ("", old), timeout, "waiting for reboot")
        self._time(start, f"(reboot: {command})")

    def shutdown(self, timeout: float = 120) -> None:
        """Power the guest off and wait for QEMU to exit; kill it if it has not within ``timeout``."""
        if not self.running():
            return
        self._unshare()
        try:
            self._ssh("systemctl poweroff", timeout=30)
        except subprocess.TimeoutExpired:
            pass
        assert self.proc is not None
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise AssertionError(f"guest did not power off within {timeout} s\n{self.diagnostics()}")

    def send_reboot(self, command: str = "systemctl reboot") -> None:
        """Start ``command`` (a reboot or poweroff) and return at once: the caller watches what follows."""
        self._unshare()
        try:
            self._ssh(command, timeout=30)
        except subprocess.TimeoutExpired:
            pass

    def wait_for_serial(self, text: str, timeout: float, since: int = 0) -> int:
        """Wait until the serial log shows ``text`` (after offset ``since``); its offset."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = self.serial_log().find(text, since)
            if found >= 0:
                return found
            if not self.running():
                break
            time.sleep(0.2)
        raise AssertionError(f"no {text!r} on the serial console within {timeout} s\n{self.diagnostics()}")

    def power_cut(self, keep_log: Path | None = None) -> None:
        """SIGKILL QEMU: the guest loses power now, with what its page cache held. The serial log so
        far is kept in ``keep_log``; :meth:`start` boots the same disk again."""
        assert self.proc is not None
        os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=30)
        self.proc = None
        if keep_log is not None:
            shutil.copyfile(self.serial_path, keep_log)
        shutil.rmtree(self.mux_dir, ignore_errors=True)
        self.mux_dir = Path(tempfile.mkdtemp(prefix="aot-ssh-"))

    def kill(self) -> None:
        """Make sure QEMU is gone: SIGTERM its process group, SIGKILL after 10 s."""
        try:
            self._unshare()
        except subprocess.TimeoutExpired:
            pass
        shutil.rmtree(self.mux_dir, ignore_errors=True)
        if self.proc is None:
            return
        for sig in (signal.SIGTERM, signal.SIGKILL):
            if self.proc.poll() is not None:
                break
            try:
                os.killpg(self.proc.pid, sig)
                self.proc.wait(timeout=10)
            except ProcessLookupError:
                break
            except subprocess.TimeoutExpired:
                continue
        self.proc.wait(timeout=10)
