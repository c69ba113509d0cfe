"""The parts of data/ that come from the verb table: the OS interface's transaction methods in
org.projectatomic.aptostree1.xml and the polkit actions of org.projectatomic.aptostree1.policy.

``make generated`` (``python3 -m apt_ostree.daemon.interface``) writes them; tests/unit/test_verbs.py
fails when either is not current. Everything else in the XML is written by hand.
"""

from __future__ import annotations

import sys
from pathlib import Path

from apt_ostree import verbs
from apt_ostree.dbus_names import BUS_NAME

TOP = Path(__file__).resolve().parents[2]
XML = TOP / "data/org.projectatomic.aptostree1.xml"
POLICY = TOP / "data/org.projectatomic.aptostree1.policy"
BEGIN = "    <!-- transaction methods: generated from apt_ostree/verbs.py (make generated) -->\n"
END = "    <!-- end of the generated methods -->\n"


def methods_xml() -> str:
    """The <method> elements of the rows' methods, in the table's order."""
    out = [BEGIN]
    for method in dict.fromkeys(v.method for v in verbs.VERBS if v.method):
        verb = verbs.by_method(method)[0]
        out.append(f'    <method name="{method}">\n')
        for arg in verb.call:
            out.append(f'      <arg name="{arg}" type="{verb.arg_signature(arg)}" direction="in"/>\n')
        out.append('      <arg name="transaction_address" type="s" direction="out"/>\n    </method>\n')
    out.append(END)
    return "".join(out)


def xml(current: str) -> str:
    """``current`` (the XML file's text) with its generated block made anew."""
    head, sep, rest = current.partition(BEGIN)
    _, sep2, tail = rest.partition(END)
    if not (sep and sep2):
        raise ValueError(f"{XML.name}: the generated block's markers are missing")
    return head + methods_xml() + tail


def policy() -> str:
    out = ['<?xml version="1.0" encoding="UTF-8"?>\n',
           '<!DOCTYPE policyconfig PUBLIC "-//freedesktop//DTD polkit Policy Configuration 1.0//EN"\n',
           ' "http://www.freedesktop.org/software/polkit/policyconfig-1.dtd">\n',
           "<!-- apt-ostreed asks polkit for one of these before every change; root is always allowed.\n",
           "     Local rules (/etc/polkit-1/rules.d) can grant them to a group, e.g. sudo.\n",
           "     Generated from apt_ostree/verbs.py (make generated). -->\n",
           "<policyconfig>\n  <vendor>apt-ostree</vendor>\n  <icon_name>package-x-generic</icon_name>\n"]
    for action, (description, message) in verbs.ACTIONS.items():
        out += [f'  <action id="{BUS_NAME}.{action}">\n', f"    <description>{description}</description>\n",
                f"    <message>{message}</message>\n", "    <defaults>\n",
                "      <allow_any>auth_admin</allow_any>\n", "      <allow_inactive>auth_admin</allow_inactive>\n",
                "      <allow_active>auth_admin_keep</allow_active>\n", "    </defaults>\n", "  </action>\n"]
    out.append("</policyconfig>\n")
    return "".join(out)


def main() -> int:
    XML.write_text(xml(XML.read_text()))
    POLICY.write_text(policy())
    return 0


if __name__ == "__main__":
    sys.exit(main())
