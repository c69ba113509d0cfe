"""Names shared by apt-ostreed and its clients: bus name, object paths, interfaces, errors.

The interfaces themselves are data/org.projectatomic.aptostree1.xml (docs/dbus-api.md).
"""

from __future__ import annotations

from pathlib import Path

BUS_NAME = "org.projectatomic.aptostree1"
PREFIX = "/org/projectatomic/aptostree1"
SYSROOT_PATH = f"{PREFIX}/Sysroot"
SYSROOT_IFACE = f"{BUS_NAME}.Sysroot"
OS_IFACE = f"{BUS_NAME}.OS"
TRANSACTION_IFACE = f"{BUS_NAME}.Transaction"
POLKIT_PREFIX = f"{BUS_NAME}."

ERROR_BUSY = f"{BUS_NAME}.Error.Busy"
ERROR_INVALID = f"{BUS_NAME}.Error.InvalidArgs"
ERROR_DENIED = f"{BUS_NAME}.Error.AccessDenied"
ERROR_FAILED = f"{BUS_NAME}.Error.Failed"
# a transaction's typed error: the name of its class in apt_ostree.errors (…Error.UnknownPackage)
ERROR_PREFIX = f"{BUS_NAME}.Error."
TYPED_ERRORS = ("AptOstreeError", "UsageError", "TreefileError", "CommandError", "RepoError", "SysrootBusy",
                "AptError", "UnknownPackage", "LayeringError", "ComposeError", "ImageError", "Cancelled", "DaemonError")


def error_name(class_name: str) -> str:
    """The D-Bus error name of a transaction that failed with the apt_ostree.errors class ``class_name``."""
    return ERROR_PREFIX + (class_name if class_name in TYPED_ERRORS else "AptOstreeError")


def error_class_name(dbus_name: str) -> str | None:
    name = dbus_name.removeprefix(ERROR_PREFIX)
    return name if dbus_name.startswith(ERROR_PREFIX) and name in TYPED_ERRORS else None

# the environment variable that forces in-process operation (the daemon's worker sets it)
NO_DAEMON_ENV = "APT_OSTREE_NO_DAEMON"

_XML_NAME = f"{BUS_NAME}.xml"
# a checkout's data/, then where the Debian package installs it
INTROSPECTION_XML_PATHS = (Path(__file__).resolve().parent.parent / "data" / _XML_NAME,
                           Path("/usr/share/dbus-1/interfaces") / _XML_NAME)


def introspection_xml() -> str:
    for path in INTROSPECTION_XML_PATHS:
        if path.is_file():
            return path.read_text()
    raise FileNotFoundError(f"{_XML_NAME} not found in {', '.join(map(str, INTROSPECTION_XML_PATHS))}")


def os_object_path(osname: str) -> str:
    """rpm-ostree's escaping: characters other than [A-Za-z0-9] become _XX (hex)."""
    return f"{PREFIX}/" + "".join(c if c.isascii() and c.isalnum() else f"_{ord(c):02x}" for c in osname)


def transaction_path(serial: int) -> str:
    return f"{PREFIX}/Transaction/{serial}"
