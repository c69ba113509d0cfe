"""Authorization: root is always allowed; everyone else asks polkit (asynchronously: a password
typed into pkttyagent must not stop the daemon serving others)."""

from __future__ import annotations

import logging
from collections.abc import Callable

from gi.repository import Gio, GLib

from apt_ostree.dbus_names import POLKIT_PREFIX

log = logging.getLogger(__name__)

_POLKIT = ("org.freedesktop.PolicyKit1", "/org/freedesktop/PolicyKit1/Authority",
           "org.freedesktop.PolicyKit1.Authority")
_ALLOW_USER_INTERACTION = 1
_NO_TIMEOUT = 0x7FFFFFFF


def caller(connection: Gio.DBusConnection, sender: str) -> tuple[int, int]:
    """(uid, pid) of a bus client, asked of the bus daemon."""
    ids = []
    for method in ("GetConnectionUnixUser", "GetConnectionUnixProcessID"):
        reply = connection.call_sync("org.freedesktop.DBus", "/org/freedesktop/DBus", "org.freedesktop.DBus", method,
                                     GLib.Variant("(s)", (sender,)), GLib.VariantType("(u)"),
                                     Gio.DBusCallFlags.NONE, -1, None)
        ids.append(int(reply.unpack()[0]))
    return ids[0], ids[1]


def authorize(connection: Gio.DBusConnection, sender: str, action: str, done: Callable[[bool, str], None]) -> None:
    """Call ``done(allowed, reason)`` once polkit has decided whether ``sender`` may do ``action``."""
    action_id = POLKIT_PREFIX + action
    try:
        uid, _ = caller(connection, sender)
    except GLib.Error as e:
        done(False, f"cannot identify the caller: {e.message}")
        return
    if uid == 0:
        done(True, "")
        return
    subject = ("system-bus-name", {"name": GLib.Variant("s", sender)})

    def reply(conn: Gio.DBusConnection, result: Gio.AsyncResult) -> None:
        try:
            (authorized, challenge, _details), = conn.call_finish(result).unpack()
        except GLib.Error as e:
            log.warning("polkit check of %s for uid %d failed: %s", action_id, uid, e.message)
            done(False, f"polkit is not available to authorize {action_id}: {e.message}")
            return
        log.info("polkit: uid %d %s %s", uid, "may" if authorized else "may not", action_id)
        done(bool(authorized), "" if authorized else f"Not authorized: {action_id}"
             + (" (authentication required)" if challenge else ""))

    connection.call(*_POLKIT, "CheckAuthorization",
                    GLib.Variant("((sa{sv})sa{ss}us)", (subject, action_id, {}, _ALLOW_USER_INTERACTION, "")),
                    GLib.VariantType("((bba{ss}))"), Gio.DBusCallFlags.NONE, _NO_TIMEOUT, None, reply)
