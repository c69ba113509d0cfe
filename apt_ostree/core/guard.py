"""Point ``apt install``, ``apt-get remove``, ``dpkg -i``... on a booted image to apt-ostree.

On an apt-ostree system /usr (and the dpkg database under it) is read-only, so
APT and dpkg would fail with "Read-only file system" or lock errors. Compose
diverts /usr/bin/apt, /usr/bin/apt-get and /usr/bin/dpkg (``dpkg-divert
--rename``) and installs a small shell guard in their place: on a booted OSTree
system (``/run/ostree-booted``) it refuses the commands that change packages and
names the apt-ostree command to use — unless /usr is writable (``apt-ostree usroverlay``): then
it lets them through with a warning that says when the change is lost; everything else (queries, ``apt-get
update``, simulations, and every call inside build and layering sandboxes, which
have no /run/ostree-booted) runs the real program.
"""

from __future__ import annotations

from pathlib import Path

GUARD = "usr/libexec/apt-ostree/package-guard"
GUARDED = ("usr/bin/apt", "usr/bin/apt-get", "usr/bin/dpkg")
REAL_SUFFIX = ".apt-ostree-real"

GUARD_SCRIPT = r"""#!/bin/sh
# apt-ostree: apt, apt-get and dpkg on an image-based system (see apt-ostree(8)).
name=${0##*/}
real=/usr/bin/$name.apt-ostree-real
usr=/usr
state=/run/ostree/deployment-state
if [ ! -e /run/ostree-booted ]; then
    exec "$real" "$@"
fi
verb=
simulate=
for a in "$@"; do
    case $a in
        -s|--simulate|--just-print|--dry-run|--recon|--no-act|--no-act=*) simulate=1 ;;
        -*) ;;
        *) [ -z "$verb" ] && verb=$a ;;
    esac
done
refuse() {
    if [ -w "$usr" ]; then  # unlocked (apt-ostree usroverlay): the real program, with a warning
        when="when another deployment boots (a hotfix overlay)"
        for stamp in "$state"/*/unlocked-development "$state"/*/unlocked-transient; do
            [ -e "$stamp" ] && when="at the next reboot"
        done
        echo "$name: warning: /usr is unlocked (apt-ostree usroverlay): this change is lost $when;" \
            "to keep packages across updates: $1" >&2
        return 0
    fi
    echo "$name: this is an image-based system (apt-ostree): packages change by deploying a new image." >&2
    echo "$name: use: $1" >&2
    echo "$name: ('apt-ostree --help' lists the commands; changes apply after a reboot)" >&2
    exit "$2"
}
shift_words() { for a in "$@"; do case $a in -*) ;; *) printf ' %s' "$a" ;; esac; done; }
if [ "$name" = dpkg ]; then
    case ${1:-} in
        -i|--install|--unpack|-A|--record-avail|--configure|--triggers-only|-r|--remove|-P|--purge|\
        --update-avail|--merge-avail|--clear-avail|--forget-old-unavail|--set-selections|--clear-selections|\
        --add-architecture|--remove-architecture)
            [ -n "$simulate" ] ||
                refuse "apt-ostree install ./PACKAGE.deb  (or: apt-ostree uninstall / override remove)" 2 ;;
    esac
    exec "$real" "$@"
fi
[ -n "$simulate" ] && exec "$real" "$@"
pkgs=$(shift_words "$@" | sed "s/^ $verb//")
case $verb in
    install|reinstall) refuse "apt-ostree install$pkgs" 100 ;;
    remove|purge|autoremove|autopurge)
        refuse "apt-ostree uninstall$pkgs  (base packages: apt-ostree override remove$pkgs)" 100 ;;
    upgrade|full-upgrade|dist-upgrade|dselect-upgrade) refuse "apt-ostree upgrade" 100 ;;
    build-dep|satisfy) refuse "apt-ostree install PACKAGE..." 100 ;;
esac
exec "$real" "$@"
"""


def write_guard(root: Path) -> Path:
    """Write the guard script into the tree; the caller diverts the GUARDED programs to it."""
    path = root / GUARD
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(GUARD_SCRIPT)
    path.chmod(0o755)
    return path


def link_guards(root: Path) -> None:
    """After the diversions (``/usr/bin/X`` moved to ``X.apt-ostree-real``): X -> the guard."""
    for rel in GUARDED:
        target = root / rel
        if (root / (rel + REAL_SUFFIX)).exists() and not target.exists():
            target.symlink_to("../libexec/apt-ostree/package-guard")
