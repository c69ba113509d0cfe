"""Issue 15's sandbox proof: a maintainer script tries to break out of the layering sandbox in every
way we know of, and each attempt fails; the test names the protection that stopped it.

One synthetic .deb (aot-probe) is layered with the real CLI. Its postinst runs PROBE (Python: the
image has python3, ctypes included) inside the sandbox dpkg runs in (apt_ostree/core/layering.py's
_dpkg_wrapper: the overlay's merged tree as /, /usr/etc on /etc, APT's archives read-only, a fresh
/proc, /dev, /tmp and /run, new PID, IPC, UTS, cgroup and network namespaces, only DPKG_CAPS). The
script writes one JSON line per attempt to /usr/share/aot-probe/results and exits 0, so the layer is
committed and the test reads the results from the new commit. PROTECTIONS is the table: attempt ->
the protection expected to stop it (derived from apt_ostree/sandbox.py, bubblewrap's own set-up and
DPKG_CAPS) and the errors that show it did. Afterwards the host is checked too: no file written, no
connection made to the listeners the test opened, no mount left, no secret in the results, the
repository's objects (the base checkout is hardlinks to them) unchanged."""

from __future__ import annotations

import contextlib
import ctypes
import hashlib
import json
import os
import re
import socket
import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from apt_ostree.core.layering import DPKG_CAPS
from tests.conftest import Composed, apt_ostree
from tests.debrepo import SH, Deb, build_deb
from tests.root.test_deployments import status

pytestmark = pytest.mark.root

RESULTS = "/usr/share/aot-probe/results"
BASE_FILE = "/usr/share/common-licenses/BSD"  # a base file the probe appends to (overlay copy-up)
AT_FDCWD = -100

# The script run by the postinst, in the tree's python3. PARAMS is replaced by the test's JSON.
PROBE = r'''#!/usr/bin/python3
import ctypes, errno, hashlib, json, os, socket, stat, subprocess

P = json.loads(r"""PARAMS""")
libc = ctypes.CDLL(None, use_errno=True)
results = open("/usr/share/aot-probe/results", "w")


class Refused(Exception):
    def __init__(self, code, detail):
        super().__init__(detail)
        self.code = code


def check(ret):
    if ret < 0:
        e = ctypes.get_errno()
        raise OSError(e, os.strerror(e))
    return ret


def attempt(name, fn):
    """fn() returns (got through?, detail); an OSError (or Refused) is the refusal."""
    try:
        ok, detail = fn()
        line = {"name": name, "ok": ok, "errno": None, "detail": detail}
    except socket.gaierror as e:
        line = {"name": name, "ok": False, "errno": "gaierror", "detail": str(e)}
    except Refused as e:
        line = {"name": name, "ok": False, "errno": e.code, "detail": str(e)}
    except OSError as e:
        code = errno.errorcode.get(e.errno, type(e).__name__) if e.errno else type(e).__name__
        line = {"name": name, "ok": False, "errno": code, "detail": str(e)}
    except Exception as e:
        line = {"name": name, "ok": False, "errno": type(e).__name__, "detail": repr(e)}
    results.write(json.dumps(line) + "\n")


def fact(name, value):
    results.write(json.dumps({"fact": name, "value": value}) + "\n")


def create(path):
    def f():
        with open(path, "x") as out:
            out.write("written by a maintainer script\n")
        return True, f"created {path}"
    return f


def read(path):
    def f():
        with open(path, "rb") as src:
            return True, src.read(4096).decode(errors="replace")
    return f


def tool(*argv):
    def f():
        proc = subprocess.run(argv, capture_output=True, text=True)
        if proc.returncode != 0:
            raise Refused(f"exit {proc.returncode}", (proc.stdout + proc.stderr).strip())
        return True, proc.stdout.strip()
    return f


def connect(family, address):
    def f():
        with socket.socket(family, socket.SOCK_STREAM) as s:
            s.settimeout(3)
            s.connect(address)
        return True, f"connected to {address!r}"
    return f


def in_child(fn):
    """fn() in a forked child (it changes its root or namespaces); its (ok, detail) or error comes back."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(r)
        try:
            ok, detail = fn()
            msg = {"ok": ok, "detail": detail}
        except OSError as e:
            msg = {"errno": errno.errorcode.get(e.errno or 0, "?"), "detail": str(e)}
        os.write(w, json.dumps(msg).encode())
        os._exit(0)
    os.close(w)
    data = b""
    while chunk := os.read(r, 65536):
        data += chunk
    os.close(r)
    os.waitpid(pid, 0)
    msg = json.loads(data)
    if "errno" in msg:
        raise Refused(msg["errno"], msg["detail"])
    return msg["ok"], msg["detail"]


H = P["hostdir"]
MNT = "/mnt" if os.path.isdir("/mnt") else "/tmp"

# --- the host's files
attempt("host-write", create(H + "/written"))
attempt("host-write-proc1-root", create("/proc/1/root" + H + "/written-through-proc1"))
attempt("host-write-package-cache", create("/run/apt-ostree/archives/aot-probe-written"))
attempt("read-host-root", read("/root/" + P["root_secret"]))
attempt("read-host-etc", read("/etc/" + P["etc_secret"]))
attempt("read-host-proc1-root", read("/proc/1/root" + H + "/secret"))
attempt("read-host-proc-self-root-dotdot", read("/proc/self/root/../../../.." + H + "/secret"))


def shadow():
    with open("/etc/shadow", "rb") as src:
        data = src.read()
    digest = hashlib.sha256(data).hexdigest()
    return digest == P["host_shadow_sha256"], f"read {len(data)} bytes, sha256 {digest}"


attempt("read-host-shadow", shadow)


def breakout():
    """The classic chroot escape (CAP_SYS_CHROOT is kept): chroot into a subdirectory while the
    working directory stays outside, climb, chroot to where we ended up."""
    os.makedirs("/tmp/aot-jail", exist_ok=True)
    os.chdir("/")
    os.chroot("/tmp/aot-jail")
    for _ in range(64):
        os.chdir("..")
    os.chroot(".")
    if os.path.exists(H):
        return True, "the host's directory is visible after the breakout: " + " ".join(os.listdir(H))
    return False, "climbed to the sandbox's /: " + " ".join(sorted(os.listdir("/"))[:40])


attempt("chroot-breakout", lambda: in_child(breakout))


class FileHandle(ctypes.Structure):
    _fields_ = (("handle_bytes", ctypes.c_uint), ("handle_type", ctypes.c_int), ("f_handle", ctypes.c_ubyte * 128))


def by_handle():
    """'shocker': open the host's secret by its file handle, through the mount of the one host directory
    bound in (APT's archives, on the same file system)."""
    raw = bytes.fromhex(P["handle"])
    fh = FileHandle(len(raw), P["handle_type"])
    ctypes.memmove(fh.f_handle, raw, len(raw))
    mount_fd = os.open("/run/apt-ostree/archives", os.O_RDONLY | os.O_DIRECTORY)
    try:
        fd = check(libc.open_by_handle_at(mount_fd, ctypes.byref(fh), os.O_RDONLY))
    finally:
        os.close(mount_fd)
    with os.fdopen(fd, "rb") as src:
        return True, src.read(4096).decode(errors="replace")


attempt("open-by-handle", by_handle)

# --- the network
attempt("net-loopback", connect(socket.AF_INET, ("127.0.0.1", P["port"])))
attempt("net-outside", connect(socket.AF_INET, (P["outside_ip"], P["outside_port"])))
if P["outside_name"]:
    attempt("net-resolve", lambda: (True, repr(socket.getaddrinfo(P["outside_name"], 80, socket.AF_INET))))
attempt("net-abstract-unix", connect(socket.AF_UNIX, "\0" + P["abstract"]))
attempt("net-host-unix-socket", connect(socket.AF_UNIX, P["unix_path"]))
attempt("raw-socket", lambda: (True, repr(socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP))))

# --- kernel modules (images that are not modules: refused by the kernel even if the capability were there)
image = ctypes.create_string_buffer(b"not a kernel module", 64)
attempt("module-init_module", lambda: (check(libc.init_module(image, ctypes.c_ulong(64), b"")) == 0, "accepted"))
attempt("module-insmod", tool("insmod", "/usr/share/aot-probe/not-a-module.ko"))

# --- mounts
attempt("mount-tmpfs", lambda: (check(libc.mount(P["mount_source"].encode(), MNT.encode(), b"tmpfs", 0, None)) == 0,
                                f"mounted a tmpfs on {MNT}"))
attempt("mount-bind-root", lambda: (check(libc.mount(b"/", MNT.encode(), None, 4096, None)) == 0,
                                    f"bound / on {MNT}"))  # MS_BIND
attempt("mount-tool-tmpfs", tool("mount", "-t", "tmpfs", P["mount_source"], MNT))
attempt("mount-tool-bind-root", tool("mount", "--bind", "/", MNT))


def userns_mount():
    os.unshare(os.CLONE_NEWUSER | os.CLONE_NEWNS)
    check(libc.mount(P["mount_source"].encode(), b"/tmp", b"tmpfs", 0, None))
    with open("/proc/self/mountinfo") as info:
        mine = [ln.strip() for ln in info if P["mount_source"] in ln]
    return True, "mounted in a new user and mount namespace: " + " | ".join(mine)


def mount_in_userns():
    """A user namespace of its own (all capabilities in it), a mount in it: seen by the sandbox?"""
    _, detail = in_child(userns_mount)
    with open("/proc/self/mountinfo") as info:
        seen = [ln.strip() for ln in info if P["mount_source"] in ln]
    return bool(seen), detail + ("; the sandbox sees it: " + " | ".join(seen) if seen else "; the sandbox does not")


attempt("mount-in-new-userns", mount_in_userns)

# --- /proc, processes, kernel interfaces


def open_for_writing(path):
    def f():
        os.close(os.open(path, os.O_WRONLY))  # (closed without writing anything)
        return True, f"{path} opened for writing"
    return f


attempt("proc-sysctl-core-pattern", open_for_writing("/proc/sys/kernel/core_pattern"))
attempt("proc-sysctl-modprobe", open_for_writing("/proc/sys/kernel/modprobe"))
attempt("proc-sysrq-trigger", open_for_writing("/proc/sysrq-trigger"))


def write_domainname():
    """A sysctl written: kernel.domainname, set to its current value (and per UTS namespace: harmless)."""
    with open("/proc/sys/kernel/domainname") as src:
        current = src.read()
    with open("/proc/sys/kernel/domainname", "w") as out:
        out.write(current)
    return True, f"wrote kernel.domainname ({current.strip()!r}, its current value)"


attempt("proc-sysctl-write", write_domainname)
attempt("signal-host-pid", lambda: (os.kill(P["host_pid"], 0) is None, f"signalled pid {P['host_pid']}"))
attempt("proc-host-pid-root", lambda: (True, repr(os.listdir(f"/proc/{P['host_pid']}/root"))))


def ptrace_host():
    # PTRACE_SEIZE: the tracee is not stopped (and is detached when this process exits)
    check(libc.ptrace(ctypes.c_long(0x4206), ctypes.c_int(P["host_pid"]), None, None))
    return True, f"seized pid {P['host_pid']}"


attempt("ptrace-host-pid", ptrace_host)


def pid1():
    os.kill(1, 0)
    with open("/proc/1/cmdline", "rb") as src:
        cmdline = src.read().replace(b"\0", b" ").decode(errors="replace").strip()
    return cmdline == P["host_pid1"], f"kill -0 1 reached: {cmdline}"


attempt("signal-pid-1", pid1)
attempt("dev-host-disk", lambda: (len(open("/dev/" + P["disk"], "rb").read(512)) > 0, "read a sector of the disk"))


def mknod_disk():
    os.mknod("/tmp/aot-disk", 0o600 | stat.S_IFBLK, os.makedev(P["disk_major"], P["disk_minor"]))
    try:
        with open("/tmp/aot-disk", "rb") as src:
            return True, f"made and read the host's disk: {len(src.read(512))} bytes"
    finally:
        os.unlink("/tmp/aot-disk")


attempt("dev-mknod-host-disk", mknod_disk)
# bogus magic numbers: EINVAL even with CAP_SYS_BOOT, never a reboot
attempt("reboot", lambda: (check(libc.syscall(169, 0, 0, 0, None)) == 0, "reboot(2) accepted"))
attempt("sethostname", lambda: (check(libc.sethostname(b"aot-probe", ctypes.c_size_t(9))) == 0, "hostname set"))


def write_base_file():
    with open(P["base_file"], "a") as out:
        out.write(P["tree_marker"] + "\n")
    return False, "appended to the tree's copy"


attempt("base-file-write", write_base_file)

# --- facts
with open("/proc/self/status") as src:
    fact("status", {k: v.strip() for k, v in (ln.split(":", 1) for ln in src) if k.startswith(("Cap", "NoNewPrivs",
                                                                                              "Seccomp", "Uid"))})
fact("interfaces", sorted(name for _, name in socket.if_nameindex()))
fact("pids", sorted(int(p) for p in os.listdir("/proc") if p.isdigit()))
fact("dev", sorted(os.listdir("/dev")))
fact("block-devices", sorted(n for n in os.listdir("/dev") if stat.S_ISBLK(os.lstat("/dev/" + n).st_mode)))
fact("sys", sorted(os.listdir("/sys")) if os.path.isdir("/sys") else None)
fds = {}
for n in os.listdir("/proc/self/fd"):
    try:
        st = os.fstat(int(n))
        fds[n] = [os.readlink(f"/proc/self/fd/{n}"), stat.S_ISDIR(st.st_mode)]
    except OSError:
        pass
fact("fds", fds)
fact("mountinfo", open("/proc/self/mountinfo").read().splitlines())  # (for a failure's investigation)
results.close()
'''


@dataclass(frozen=True)
class Protection:
    what: str  # the protection that must stop the attempt
    outcomes: frozenset[str]  # the errors that show it did; "contained": got somewhere, only inside the sandbox


def refused_by(what: str, *outcomes: str) -> Protection:
    return Protection(what, frozenset(outcomes))


CONTAINED = "contained"


NO_CAP = "not in DPKG_CAPS, the only capabilities the sandbox keeps (--cap-drop ALL, --cap-add each)"
PROTECTIONS: dict[str, Protection] = {
    "host-write": refused_by("the sandbox's / is the layering overlay (bwrap --bind MERGED /): no host directory "
                             "is in it", "ENOENT"),
    "host-write-proc1-root": refused_by("PID namespace and a new /proc (--unshare-pid, --proc): /proc/1 is the "
                                        "sandbox's own init, whose root is the sandbox's /", "ENOENT", "EACCES"),
    "host-write-package-cache": refused_by("the one host directory bound in, APT's archives, is read-only "
                                           "(Bind(readonly=True): --ro-bind)", "EROFS"),
    "read-host-root": refused_by("/root is the tree's (the merged tree as /), not the host's", "ENOENT"),
    "read-host-etc": refused_by("/etc is the tree's /usr/etc (--bind MERGED/usr/etc /etc)", "ENOENT"),
    "read-host-proc1-root": refused_by("PID namespace and a new /proc: /proc/1/root is the sandbox's /",
                                       "ENOENT", "EACCES"),
    "read-host-proc-self-root-dotdot": refused_by("pivot_root into a new mount namespace: /.. is / (the host's / is "
                                                  "detached)", "ENOENT"),
    "read-host-shadow": refused_by("/etc is the tree's /usr/etc: its shadow is the tree's own, never the host's",
                                   CONTAINED),
    "chroot-breakout": refused_by("CAP_SYS_CHROOT is kept (DPKG_CAPS), but bwrap pivot_roots into a new mount "
                                  "namespace and detaches the host's /: the breakout ends at the sandbox's /",
                                  CONTAINED),
    "open-by-handle": refused_by(f"CAP_DAC_READ_SEARCH is {NO_CAP} (open_by_handle_at through the archives' bind "
                                 "mount, 'shocker')", "EPERM"),
    "net-loopback": refused_by("network namespace (--unshare-net): its 127.0.0.1 is the sandbox's own loopback, "
                               "where nothing listens", "ECONNREFUSED", "ENETUNREACH"),
    "net-outside": refused_by("network namespace (--unshare-net): no interface but lo, no route out", "ENETUNREACH"),
    "net-resolve": refused_by("network namespace (--unshare-net): no name server is reachable", "gaierror"),
    "net-abstract-unix": refused_by("network namespace (--unshare-net): abstract UNIX sockets belong to it",
                                    "ECONNREFUSED"),
    "net-host-unix-socket": refused_by("a new tmpfs on /run (Sandbox.tmpfs): the host's sockets are not there",
                                       "ENOENT"),
    "raw-socket": refused_by(f"CAP_NET_RAW is {NO_CAP}", "EPERM"),
    "module-init_module": refused_by(f"CAP_SYS_MODULE is {NO_CAP}", "EPERM"),
    "module-insmod": refused_by(f"CAP_SYS_MODULE is {NO_CAP}", "exit 1"),
    "mount-tmpfs": refused_by(f"CAP_SYS_ADMIN is {NO_CAP}", "EPERM"),
    "mount-bind-root": refused_by(f"CAP_SYS_ADMIN is {NO_CAP}", "EPERM"),
    "mount-tool-tmpfs": refused_by(f"CAP_SYS_ADMIN is {NO_CAP} (mount(8) is setuid root, but bwrap's "
                                   "no_new_privs keeps an exec from gaining capabilities)", "exit 32"),
    "mount-tool-bind-root": refused_by(f"CAP_SYS_ADMIN is {NO_CAP}", "exit 32"),
    "mount-in-new-userns": refused_by("mount namespaces: a user namespace made in the sandbox (not disabled) owns "
                                      "only its own new mount namespace, seen by neither the sandbox nor the host",
                                      CONTAINED, "EPERM", "ENOSPC"),
    "proc-sysctl-core-pattern": refused_by("bwrap's --proc covers /proc/sys with a read-only bind (kernel.core_pattern "
                                           "is global: a '|program' pattern runs program as the host's root at the "
                                           "next crash)", "EROFS"),
    "proc-sysctl-modprobe": refused_by("bwrap's --proc covers /proc/sys with a read-only bind", "EROFS"),
    "proc-sysrq-trigger": refused_by("bwrap's --proc covers /proc/sysrq-trigger with a read-only bind", "EROFS"),
    "proc-sysctl-write": refused_by("bwrap's --proc covers /proc/sys with a read-only bind", "EROFS"),
    "signal-host-pid": refused_by("PID namespace (--unshare-pid): the host's processes are not in it", "ESRCH"),
    "proc-host-pid-root": refused_by("PID namespace and a new /proc: the host's processes have no /proc entry",
                                     "ENOENT"),
    "ptrace-host-pid": refused_by("PID namespace (--unshare-pid): the host's processes are not in it", "ESRCH"),
    "signal-pid-1": refused_by("PID namespace (--unshare-pid): PID 1 is bwrap's init in the sandbox, not the "
                               "host's", CONTAINED),
    "dev-host-disk": refused_by("a new /dev (bwrap --dev): null, zero, full, random, urandom, tty, pts, shm; no "
                                "disk", "ENOENT"),
    "dev-mknod-host-disk": refused_by(f"CAP_MKNOD is {NO_CAP}", "EPERM"),
    "reboot": refused_by(f"CAP_SYS_BOOT is {NO_CAP}", "EPERM"),
    "sethostname": refused_by(f"CAP_SYS_ADMIN is {NO_CAP} (and the UTS namespace is the sandbox's own)", "EPERM"),
    "base-file-write": refused_by("overlayfs copy-up: the base checkout (hardlinks to the repository's objects) "
                                  "is the overlay's lower; the write lands in the upper dir", CONTAINED),
}

# Attempts whose target this kernel may lack: (host path, the outcome then, why the protection still holds)
ABSENT_ON_HOST = {
    "module-init_module": ("/proc/modules", "ENOSYS", "no module support; CAP_SYS_MODULE is checked below"),
    "module-insmod": ("/proc/modules", "exit 1", "no module support; CAP_SYS_MODULE is checked below"),
    "proc-sysctl-modprobe": ("/proc/sys/kernel/modprobe", "ENOENT", "nothing to write"),
    "proc-sysrq-trigger": ("/proc/sysrq-trigger", "ENOENT", "nothing to write"),
}

# The capability numbers of linux/capability.h, by name
CAPS = ("CHOWN DAC_OVERRIDE DAC_READ_SEARCH FOWNER FSETID KILL SETGID SETUID SETPCAP LINUX_IMMUTABLE "
        "NET_BIND_SERVICE NET_BROADCAST NET_ADMIN NET_RAW IPC_LOCK IPC_OWNER SYS_MODULE SYS_RAWIO SYS_CHROOT "
        "SYS_PTRACE SYS_PACCT SYS_ADMIN SYS_BOOT SYS_NICE SYS_RESOURCE SYS_TIME SYS_TTY_CONFIG MKNOD LEASE "
        "AUDIT_WRITE AUDIT_CONTROL SETFCAP MAC_OVERRIDE MAC_ADMIN SYSLOG WAKE_ALARM BLOCK_SUSPEND AUDIT_READ "
        "PERFMON BPF CHECKPOINT_RESTORE").split()


def cap_names(mask: int) -> set[str]:
    return {name for bit, name in enumerate(CAPS) if mask >> bit & 1} | (
        {f"bit{bit}" for bit in range(len(CAPS), 64) if mask >> bit & 1})


class FileHandle(ctypes.Structure):
    _fields_ = (("handle_bytes", ctypes.c_uint), ("handle_type", ctypes.c_int), ("f_handle", ctypes.c_ubyte * 128))


def file_handle(path: Path, mount: Path) -> tuple[int, str]:
    """name_to_handle_at(2) of a host file: what open_by_handle_at(2) needs to open it, checked on the host
    (with CAP_DAC_READ_SEARCH) through ``mount``, a directory of the same file system."""
    libc = ctypes.CDLL(None, use_errno=True)
    fh = FileHandle(128, 0)
    mount_id = ctypes.c_int()
    if libc.name_to_handle_at(AT_FDCWD, str(path).encode(), ctypes.byref(fh), ctypes.byref(mount_id), 0) != 0:
        raise OSError(ctypes.get_errno(), f"name_to_handle_at {path}")
    mount_fd = os.open(mount, os.O_RDONLY | os.O_DIRECTORY)
    try:
        fd = libc.open_by_handle_at(mount_fd, ctypes.byref(fh), os.O_RDONLY)
    finally:
        os.close(mount_fd)
    assert fd >= 0, f"open_by_handle_at on the host: {os.strerror(ctypes.get_errno())}"
    with os.fdopen(fd, "rb") as src:
        assert src.read() == path.read_bytes()
    return int(fh.handle_type), bytes(fh.f_handle[:fh.handle_bytes]).hex()


def outside() -> tuple[str | None, str, int]:
    """(name, IPv4 address, port) of the host's first http(s) APT mirror, resolved on the host; 1.1.1.1:80
    when there is none."""
    apt = Path("/etc/apt")
    for f in [apt / "sources.list", *sorted((apt / "sources.list.d").glob("*"))]:
        if not f.is_file():
            continue
        for m in re.finditer(r"(?m)^\s*(?:deb\s+(?:\[[^]]*\]\s+)?|URIs:\s*)(https?://\S+)", f.read_text()):
            uri = urlsplit(m.group(1))
            port = uri.port or (443 if uri.scheme == "https" else 80)
            if not uri.hostname:
                continue
            try:
                addr = socket.getaddrinfo(uri.hostname, port, socket.AF_INET, socket.SOCK_STREAM)[0][4][0]
            except socket.gaierror:
                continue
            return uri.hostname, str(addr), port
    return None, "1.1.1.1", 80


def reachable(addr: str, port: int) -> bool:
    try:
        socket.create_connection((addr, port), timeout=3).close()
    except OSError:
        return False
    return True


def no_connection(listener: socket.socket) -> bool:
    listener.setblocking(False)
    try:
        conn, _ = listener.accept()
    except BlockingIOError:
        return True
    conn.close()
    return False


@contextlib.contextmanager
def host_secrets(marker: str, tag: str, where: Path) -> Iterator[dict[str, Path]]:
    """Files only the host has, each holding ``marker``: in a host directory, /root and /etc."""
    hostdir = where / f"aot-probe-{tag}"
    hostdir.mkdir()
    paths = {"hostdir": hostdir, "root": Path(f"/root/aot-probe-{tag}"), "etc": Path(f"/etc/aot-probe-{tag}")}
    try:
        for path in (hostdir / "secret", paths["root"], paths["etc"]):
            path.write_text(f"host secret {marker}\n")
            path.chmod(0o600)
        yield paths
    finally:
        paths["root"].unlink(missing_ok=True)
        paths["etc"].unlink(missing_ok=True)


def host_disk() -> tuple[str, int, int]:
    """The block device holding the host's / (its /dev name, major, minor)."""
    dev = os.stat("/").st_dev
    major, minor = os.major(dev), os.minor(dev)
    uevent = Path(f"/sys/dev/block/{major}:{minor}/uevent")
    names = re.findall(r"(?m)^DEVNAME=(\S+)$", uevent.read_text()) if uevent.exists() else []
    return (names[0] if names else "vda"), major, minor


def test_a_maintainer_script_cannot_leave_the_sandbox(sysroot: Path, minimal: Composed, tmp_path: Path) -> None:
    tag = uuid.uuid4().hex
    marker = f"aot-host-secret-{uuid.uuid4().hex}"
    tree_marker = f"aot-tree-write-{uuid.uuid4().hex}"
    name, out_ip, out_port = outside()
    disk, major, minor = host_disk()
    with contextlib.ExitStack() as stack:
        secrets = stack.enter_context(host_secrets(marker, tag, tmp_path))
        listener = stack.enter_context(socket.socket(socket.AF_INET, socket.SOCK_STREAM))
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        abstract = stack.enter_context(socket.socket(socket.AF_UNIX, socket.SOCK_STREAM))
        abstract.bind(f"\0aot-probe-{tag}")
        abstract.listen(8)
        unix_path = Path(f"/run/aot-probe-{tag}.sock")
        unix = stack.enter_context(socket.socket(socket.AF_UNIX, socket.SOCK_STREAM))
        unix.bind(str(unix_path))
        stack.callback(unix_path.unlink, missing_ok=True)
        unix.listen(8)
        assert os.stat(secrets["hostdir"]).st_dev == os.stat(sysroot).st_dev  # (the handle's file system)
        handle_type, handle = file_handle(secrets["hostdir"] / "secret", sysroot)
        params = {
            "hostdir": str(secrets["hostdir"]), "root_secret": secrets["root"].name, "etc_secret": secrets["etc"].name,
            "host_shadow_sha256": hashlib.sha256(Path("/etc/shadow").read_bytes()).hexdigest(),
            "handle": handle, "handle_type": handle_type, "port": listener.getsockname()[1],
            "outside_name": name, "outside_ip": out_ip, "outside_port": out_port, "abstract": f"aot-probe-{tag}",
            "unix_path": str(unix_path), "mount_source": f"aot-probe-{tag}", "host_pid": os.getpid(),
            "host_pid1": Path("/proc/1/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip(),
            "disk": disk, "disk_major": major, "disk_minor": minor, "base_file": BASE_FILE,
            "tree_marker": tree_marker,
        }
        probe = PROBE.replace("PARAMS", json.dumps(params))
        deb = build_deb(Deb("aot-probe", files={"/usr/share/aot-probe/probe.py": probe,
                                                "/usr/share/aot-probe/not-a-module.ko": "not a kernel module\n"},
                            scripts={"postinst": SH + '[ "$1" = configure ] || exit 0\n'
                                     "/usr/bin/python3 /usr/share/aot-probe/probe.py\n"}),
                        tmp_path / "build", tmp_path / "pool")
        cli = apt_ostree("install", "--sysroot", sysroot, deb)

        # on the host: nothing written, no connection, no mount, no secret out
        assert sorted(os.listdir(secrets["hostdir"])) == ["secret"], "a file appeared in the host's directory"
        assert not list(sysroot.rglob("aot-probe-written")), "a file appeared in the host's package cache"
        host_ok = reachable(out_ip, out_port)
        for what, sock in (("127.0.0.1", listener), ("the abstract socket", abstract), (str(unix_path), unix)):
            assert no_connection(sock), f"the host's listener on {what} got a connection from the sandbox"
    with open("/proc/self/mountinfo") as info:
        leaked = [ln for ln in info if tag in ln]
    assert not leaked, f"a mount made in the sandbox is on the host: {leaked}"

    checksum = str(status(sysroot)[0]["checksum"])
    text = cat(sysroot, checksum, RESULTS)
    for seen in (text, cli.stdout, cli.stderr):
        assert marker not in seen, f"a host secret reached the sandbox:\n{text}"
    lines = [json.loads(ln) for ln in text.splitlines()]
    results = {r["name"]: r for r in lines if "name" in r}
    facts = {r["fact"]: r["value"] for r in lines if "fact" in r}
    table, failed = [], []
    for attempt, protection in PROTECTIONS.items():
        if attempt == "net-resolve" and name is None:
            continue  # (no mirror name to resolve)
        r = results.get(attempt, {"ok": None, "errno": None, "detail": "no result"})
        outcome = "GOT THROUGH" if r["ok"] else r["errno"] or CONTAINED
        outcomes, what = set(protection.outcomes), protection.what
        if attempt in ABSENT_ON_HOST and not Path(ABSENT_ON_HOST[attempt][0]).exists():
            outcomes.add(ABSENT_ON_HOST[attempt][1])
            what += f" (this kernel has no {ABSENT_ON_HOST[attempt][0]}: {ABSENT_ON_HOST[attempt][2]})"
        if attempt == "net-outside":
            what += f" (the host itself reaches {out_ip}:{out_port}: {'yes' if host_ok else 'no'})"
        table.append(f"{attempt:32} {outcome:12} {what}")
        if r["ok"] is not False or outcome not in outcomes:
            failed.append(f"{attempt}: not stopped by {what}: {outcome}: {r['detail']}")
    print("\n".join(table))

    # the attempts that got "somewhere": where they got is the sandbox's, never the host's
    shadow = hashlib.sha256(cat_bytes(sysroot, minimal.checksum, "/usr/etc/shadow")).hexdigest()
    assert results["read-host-shadow"]["detail"].endswith(f"sha256 {shadow}"), (
        f"read-host-shadow: {PROTECTIONS['read-host-shadow'].what}: {results['read-host-shadow']}")
    assert "usr" in results["chroot-breakout"]["detail"].split(), results["chroot-breakout"]
    assert "bwrap" in results["signal-pid-1"]["detail"], results["signal-pid-1"]
    assert cat(sysroot, checksum, BASE_FILE).endswith(f"{tree_marker}\n")  # (the write happened, in the tree)
    base = cat(sysroot, minimal.checksum, BASE_FILE)
    assert tree_marker not in base
    lowers = list((sysroot / "ostree/repo/tmp/apt-ostree-cache").glob(f"lower-{minimal.checksum}"))
    for lower in lowers:
        assert (lower / BASE_FILE.lstrip("/")).read_text() == base, f"base-file-write: {PROTECTIONS['base-file-write']}"
    fsck = subprocess.run(["ostree", "fsck", f"--repo={sysroot}/ostree/repo"], capture_output=True, text=True)
    assert fsck.returncode == 0 and "Corrupted" not in fsck.stdout + fsck.stderr, (
        f"base-file-write: {PROTECTIONS['base-file-write'].what}: {fsck.stdout}{fsck.stderr}")

    # the facts behind the protections
    proc = facts["status"]
    kept = set(DPKG_CAPS)
    for field in ("CapEff", "CapPrm"):
        assert cap_names(int(proc[field], 16)) == kept, f"{field}: {proc[field]} is not DPKG_CAPS {DPKG_CAPS}"
    # bwrap run by root leaves the bounding set as it is: no_new_privs is what keeps an exec (of a setuid
    # program, or any program run as uid 0) from getting the other capabilities back
    assert proc["NoNewPrivs"] == "1", f"no_new_privs is not set: {proc}"
    assert not kept & {"SYS_ADMIN", "SYS_MODULE", "SYS_PTRACE", "SYS_BOOT", "MKNOD", "DAC_READ_SEARCH",
                       "NET_ADMIN", "NET_RAW", "SYS_RAWIO"}
    assert facts["interfaces"] == ["lo"], f"network namespace: interfaces {facts['interfaces']}"
    assert facts["block-devices"] == [], f"/dev: block devices {facts['block-devices']}"
    assert not facts["sys"], f"/sys: the host's sysfs is in the sandbox: {facts['sys']}"
    dirs = {fd: target for fd, (target, is_dir) in facts["fds"].items() if is_dir}
    assert not dirs, f"directory descriptors inherited into the sandbox (an openat escape): {dirs}"

    assert not failed, "\n".join(failed)


def cat_bytes(root: Path, checksum: str, path: str) -> bytes:
    return subprocess.run(["ostree", "cat", f"--repo={root}/ostree/repo", checksum, path], check=True,
                          capture_output=True).stdout


def cat(root: Path, checksum: str, path: str) -> str:
    return cat_bytes(root, checksum, path).decode(errors="replace")
