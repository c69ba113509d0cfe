"""Turn a Debian root file system into an OSTree-ready tree, and check it.

The layout (see docs/architecture.md):
- /etc moves to /usr/etc (libostree 3-way merges it at deploy time);
- package state that must travel with the tree moves under /usr, and a
  tmpfiles.d ``L`` line links its /var path there at boot (dpkg database in
  /usr/share/dpkg/database, debconf, ucf, deb-systemd-helper);
- the rest of /var becomes tmpfiles.d entries; the commit's /var is empty
  (libostree ignores it; 2024.3+ would seed a new stateroot's /var from it);
- home root opt srv mnt media usr/local become symlinks into /var or /run;
- /sysroot is empty and /ostree points into it; /dev /proc /sys /run /tmp are empty.
"""

from __future__ import annotations

import glob
import os
import shutil
import stat
from pathlib import Path

from apt_ostree.errors import ComposeError

DPKG_DATABASE = "usr/share/dpkg/database"
DEBCONF_DATABASE = "usr/share/debconf/database"

# (path in /var, path under /usr) for package state that belongs to the tree.
STATE_MOVES = (
    ("var/lib/dpkg", DPKG_DATABASE),
    ("var/cache/debconf", DEBCONF_DATABASE),
    ("var/lib/ucf", "usr/share/ucf/database"),
    ("var/lib/systemd/deb-systemd-helper-enabled", "usr/share/deb-systemd-helper/enabled"),
    ("var/lib/systemd/deb-systemd-helper-masked", "usr/share/deb-systemd-helper/masked"),
)

# top-level name -> (symlink target, tmpfiles.d line creating the target)
TOPLEVEL_LINKS = (
    ("home", "var/home", "d /var/home 0755 root root -"),
    ("root", "var/roothome", "d /var/roothome 0700 root root -"),
    ("opt", "var/opt", "d /var/opt 0755 root root -"),
    ("srv", "var/srv", "d /var/srv 0755 root root -"),
    ("mnt", "var/mnt", "d /var/mnt 0755 root root -"),
    ("media", "run/media", "d /run/media 0755 root root -"),
)
USRLOCAL_DIRS = ("bin", "etc", "games", "include", "lib", "man", "sbin", "share", "src")
API_DIRS = ("dev", "proc", "sys", "run", "tmp")
# tmpfiles.d line types that create their path (z, Z, x, r, e, a, h, t only adjust or remove).
CREATING_TYPES = frozenset("dDvqQLCfFwpcb")
TMPFILES_VAR = "usr/lib/tmpfiles.d/apt-ostree-var.conf"
TMPFILES_LAYOUT = "usr/lib/tmpfiles.d/apt-ostree-layout.conf"
REMOVE_FILES = (
    "etc/machine-id", "etc/hostname", "etc/resolv.conf", "usr/sbin/policy-rc.d",
    "var/lib/dbus/machine-id", "etc/ssh/ssh_host_*", "etc/initramfs-tools/conf.d/resume",
)


def _empty_dir(path: Path) -> None:
    for entry in path.iterdir():
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry)
        else:
            entry.unlink()


def _names(root: Path, file: str) -> dict[int, str]:
    names: dict[int, str] = {}
    path = root / file
    if path.exists():
        for line in path.read_text().splitlines():
            fields = line.split(":")
            if len(fields) > 2 and fields[2].isdigit():
                names.setdefault(int(fields[2]), fields[0])
    return names


def clean_host_leftovers(root: Path, machineid_compat: bool) -> None:
    """Files a build leaves that must not be in an image (host identity, keys, locks)."""
    for pattern in REMOVE_FILES:
        # glob() skips dangling symlinks for exact names (resolv.conf -> /run/...): look them up directly.
        for p in root.glob(pattern) if glob.has_magic(pattern) else [root / pattern]:
            if p.is_symlink() or p.is_file():
                p.unlink()
    if machineid_compat:
        (root / "etc/machine-id").write_text("")
        (root / "etc/machine-id").chmod(0o444)


SSH_KEYGEN_UNIT = "usr/lib/systemd/system/apt-ostree-ssh-keygen.service"
SSH_KEYGEN_DROPIN = "usr/lib/systemd/system/ssh.service.d/apt-ostree-ssh-keygen.conf"


def add_ssh_keygen(root: Path) -> bool:
    """Images ship no SSH host keys (each machine needs its own), and Debian's ssh.service
    does not create them: generate the missing ones before sshd starts."""
    if not (root / "usr/sbin/sshd").exists():
        return False
    unit = root / SSH_KEYGEN_UNIT
    unit.parent.mkdir(parents=True, exist_ok=True)
    unit.write_text("[Unit]\nDescription=Generate missing SSH host keys (images ship none)\n"
                    "Before=ssh.service\n\n[Service]\nType=oneshot\nExecStart=/usr/bin/ssh-keygen -A\n")
    dropin = root / SSH_KEYGEN_DROPIN
    dropin.parent.mkdir(parents=True, exist_ok=True)
    dropin.write_text("[Unit]\nWants=apt-ostree-ssh-keygen.service\nAfter=apt-ostree-ssh-keygen.service\n")
    return True


def move_package_state(root: Path) -> list[str]:
    """Move /var package state under /usr; leave relative symlinks; return tmpfiles lines."""
    lines = []
    for var_path, usr_path in STATE_MOVES:
        src, dest = root / var_path, root / usr_path
        if not src.exists() or src.is_symlink():
            continue
        if dest.exists():
            raise ComposeError(f"cannot move /{var_path}: /{usr_path} already exists")
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(str(src), dest)
        target = os.path.relpath(dest, src.parent)
        src.symlink_to(target)
        lines.append(f"L /{var_path} - - - - {target}")
    return lines


# /var content that is machine-local noise, never worth keeping in a commit.
VAR_NOISE = ("var/log/", "var/cache/", "var/tmp/", "var/lib/apt/", "var/backups/")
FACTORY = "usr/share/factory"


def convert_var(root: Path, factory: bool = False) -> tuple[list[str], list[str]]:
    """Describe /var as tmpfiles.d lines and empty it (the state symlinks are tmpfiles lines too).

    With ``factory``, regular files outside logs and caches are kept: moved to
    /usr/share/factory/var/... and copied into /var at boot by a tmpfiles ``C`` line.
    Returns (tmpfiles lines, paths of regular files that were dropped).
    """
    var = root / "var"
    etc = "etc" if (root / "etc/passwd").exists() else "usr/etc"
    users, groups = _names(root, f"{etc}/passwd"), _names(root, f"{etc}/group")
    known = _tmpfiles_paths(root)
    state_links = {v for v, _ in STATE_MOVES}
    lines: list[str] = []
    dropped: list[str] = []
    for dirpath, dirnames, filenames in os.walk(var):
        dirnames.sort()
        rel_dir = Path(dirpath).relative_to(root)
        for name in sorted(dirnames + filenames):
            path = Path(dirpath) / name
            rel = str(rel_dir / name)
            st = path.lstat()
            if "/" + rel in known:
                if not stat.S_ISDIR(st.st_mode) and not stat.S_ISLNK(st.st_mode):
                    dropped.append("/" + rel)
                continue
            if stat.S_ISDIR(st.st_mode):
                lines.append(f"d /{rel} {stat.S_IMODE(st.st_mode):04o} {users.get(st.st_uid, st.st_uid)} "
                             f"{groups.get(st.st_gid, st.st_gid)} -")
            elif stat.S_ISLNK(st.st_mode):
                if rel not in state_links:
                    lines.append(f"L /{rel} - - - - {os.readlink(path)}")
            elif factory and not rel.startswith(VAR_NOISE):
                dest = root / FACTORY / rel
                dest.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(path, dest)
                os.chown(dest, st.st_uid, st.st_gid)  # (tmpfiles' C copies the owner from the factory file)
                lines.append(f"C /{rel} - - - - /{FACTORY}/{rel}")
            else:
                dropped.append("/" + rel)
        dirnames[:] = [d for d in dirnames if not (Path(dirpath) / d).is_symlink()]
    # Empty: libostree ignores a commit's /var (and says so at every deploy); tmpfiles.d makes it.
    _empty_dir(var)
    return sorted(lines, key=lambda ln: ln.split()[1]), dropped


def make_state_links(root: Path) -> None:
    """The /var symlinks to the package state under /usr, as the tree's tmpfiles.d makes them at
    boot: for running dpkg in a tree that has not booted."""
    for var_path, usr_path in STATE_MOVES:
        link, target = root / var_path, root / usr_path
        if target.is_dir() and not os.path.lexists(link):
            link.parent.mkdir(parents=True, exist_ok=True)
            link.symlink_to(os.path.relpath(target, link.parent))


def _tmpfiles_paths(root: Path) -> set[str]:
    """Paths the tree's packages already describe in tmpfiles.d (not to be duplicated)."""
    paths = set()
    for conf in sorted((root / "usr/lib/tmpfiles.d").glob("*.conf")):
        for line in conf.read_text(errors="replace").splitlines():
            fields = line.split()
            if len(fields) >= 2 and fields[0][:1] in CREATING_TYPES:
                paths.add(fields[1].rstrip("/"))
    return paths


def make_toplevel_links(root: Path) -> list[str]:
    """home, root, opt, srv, mnt, media and usr/local as symlinks; return tmpfiles lines."""
    lines = []
    for name, target, line in TOPLEVEL_LINKS:
        path = root / name
        if path.is_symlink():
            path.unlink()
        elif path.is_dir():
            content = [p.name for p in path.iterdir()]
            if content and name not in ("root",):
                raise ComposeError(f"/{name} is not empty ({', '.join(sorted(content)[:5])})",
                                   hint=f"/{name} becomes a symlink to /{target}; packages must not ship files there")
            shutil.rmtree(path)
        path.symlink_to(target)
        lines.append(line)
    local = root / "usr/local"
    if local.is_dir() and not local.is_symlink():
        stray = [str(p.relative_to(root)) for p in local.rglob("*") if not p.is_dir()]
        if stray:
            raise ComposeError(f"/usr/local is not empty ({', '.join(sorted(stray)[:5])})",
                               hint="/usr/local becomes a symlink to /var/usrlocal")
        shutil.rmtree(local)
    if not local.is_symlink():
        local.symlink_to("../var/usrlocal")
    lines.append("d /var/usrlocal 0755 root root -")
    lines += [f"d /var/usrlocal/{d} 0755 root root -" for d in USRLOCAL_DIRS]
    sysroot = root / "sysroot"
    sysroot.mkdir(exist_ok=True)
    _empty_dir(sysroot)
    ostree = root / "ostree"
    if ostree.is_symlink() or ostree.exists():
        if ostree.is_dir() and not ostree.is_symlink():
            shutil.rmtree(ostree)
        else:
            ostree.unlink()
    ostree.symlink_to("sysroot/ostree")
    return lines


def move_opt(root: Path) -> list[str]:
    """Package content in /opt (really /var/opt: /opt is a symlink) moves to /usr/lib/opt,
    with a tmpfiles.d symlink at /var/opt/NAME, as rpm-ostree does."""
    lines: list[str] = []
    var_opt = root / "var/opt"
    if not var_opt.is_dir():
        return lines
    for entry in sorted(var_opt.iterdir()):
        dest = root / "usr/lib/opt" / entry.name
        if dest.exists():
            raise ComposeError(f"cannot move /opt/{entry.name}: /usr/lib/opt/{entry.name} already exists")
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(str(entry), dest)
        lines.append(f"L /var/opt/{entry.name} - - - - /usr/lib/opt/{entry.name}")
    return lines


SYSUSERS_CONF = "usr/lib/sysusers.d/apt-ostree-system.conf"
SYSUSERS_UNIT = "usr/lib/systemd/system/apt-ostree-sysusers.service"
SYSUSERS_WANTS = "usr/lib/systemd/system/sysinit.target.wants/apt-ostree-sysusers.service"
SYSUSERS_UNIT_TEXT = """[Unit]
Description=Add this deployment's system users and groups missing from /etc
Documentation=man:apt-ostree(8)
DefaultDependencies=no
After=systemd-remount-fs.service
Before=sysinit.target systemd-sysusers.service systemd-tmpfiles-setup.service
ConditionPathExists=/run/ostree-booted

[Service]
Type=oneshot
RemainAfterExit=yes
ExecStart=systemd-sysusers /usr/lib/sysusers.d/apt-ostree-system.conf
"""


def _entries(path: Path) -> list[list[str]]:
    if not path.exists():
        return []
    return [line.split(":") for line in path.read_text().splitlines() if line.count(":") >= 2]


def write_sysusers(root: Path, etc: str = "etc") -> bool:
    """The tree's system users and groups as a sysusers.d file, applied at every boot.

    libostree's 3-way /etc merge keeps an /etc/passwd the admin has changed, and so
    drops users that a new deployment's packages added; systemd-sysusers adds the
    missing ones (with the tree's ids, so file ownership matches) and leaves the rest.
    """
    if not (root / "usr/bin/systemd-sysusers").exists():
        return False
    lines = ["# System users and groups of this tree (generated by apt-ostree; do not edit)."]
    groups = _entries(root / etc / "group")
    for fields in groups:
        if fields[2].isdigit() and 0 < int(fields[2]) < 1000:
            lines.append(f"g {fields[0]} {fields[2]}")
    for fields in _entries(root / etc / "passwd"):
        if len(fields) < 7 or not fields[2].isdigit() or not 0 < int(fields[2]) < 1000:
            continue
        name, uid, gid, gecos, home, shell = fields[0], fields[2], fields[3], fields[4], fields[5], fields[6]
        gecos_q = '"' + gecos.replace('"', "") + '"' if gecos else "-"
        lines.append(f"u {name} {uid}:{gid} {gecos_q} {home or '-'} {shell or '-'}")
    for fields in groups:
        if len(fields) >= 4 and fields[2].isdigit() and 0 < int(fields[2]) < 1000:
            for member in filter(None, fields[3].split(",")):
                lines.append(f"m {member} {fields[0]}")
    conf = root / SYSUSERS_CONF
    conf.parent.mkdir(parents=True, exist_ok=True)
    conf.write_text("\n".join(lines) + "\n")
    unit = root / SYSUSERS_UNIT
    unit.parent.mkdir(parents=True, exist_ok=True)
    unit.write_text(SYSUSERS_UNIT_TEXT)
    wants = root / SYSUSERS_WANTS
    wants.parent.mkdir(parents=True, exist_ok=True)
    if not wants.is_symlink():
        wants.symlink_to("../apt-ostree-sysusers.service")
    return True


def empty_api_dirs(root: Path) -> None:
    for name in API_DIRS:
        d = root / name
        d.mkdir(exist_ok=True)
        _empty_dir(d)
    (root / "tmp").chmod(0o1777)


def move_etc(root: Path) -> None:
    etc, usretc = root / "etc", root / "usr/etc"
    if usretc.exists():
        raise ComposeError("the tree already has /usr/etc", hint="packages must not ship files in /usr/etc")
    shutil.move(str(etc), usretc)


def write_tmpfiles(root: Path, rel: str, lines: list[str], header: str) -> None:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    body = "".join(f"{ln}\n" for ln in lines)
    path.write_text(f"# {header}\n# Generated by apt-ostree compose; do not edit.\n{body}")
    path.chmod(0o644)


def check_layout(root: Path, container: bool) -> None:
    """Assert the tree is a valid OSTree tree; raise ComposeError naming the problem."""
    problems = []
    if (root / "etc").exists():
        problems.append("/etc still exists")
    if not (root / "usr/etc").is_dir():
        problems.append("/usr/etc is missing")
    for name in API_DIRS:
        d = root / name
        if d.exists() and any(d.iterdir()):
            problems.append(f"/{name} is not empty")
    boot = root / "boot"
    if boot.exists() and any(boot.iterdir()):
        problems.append("/boot is not empty")
    if not (root / DPKG_DATABASE / "status").is_file():
        problems.append(f"/{DPKG_DATABASE}/status is missing")
    if (root / "usr/sbin/policy-rc.d").exists():
        problems.append("/usr/sbin/policy-rc.d left behind")
    if list((root / "usr/etc/ssh").glob("ssh_host_*")):
        problems.append("ssh host keys left behind")
    if not container:
        kernels = [p for p in (root / "usr/lib/modules").glob("*/vmlinuz")]
        if len(kernels) != 1:
            problems.append(f"expected exactly one kernel in /usr/lib/modules, found {len(kernels)}")
        elif not (kernels[0].parent / "initramfs.img").is_file():
            problems.append(f"no initramfs.img next to {kernels[0].relative_to(root)}")
    if problems:
        raise ComposeError("composed tree is not OSTree-ready: " + "; ".join(problems))
