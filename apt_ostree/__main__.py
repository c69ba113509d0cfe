"""``python3 -m apt_ostree``: the apt-ostree command."""

from apt_ostree.cli.main import entry

entry()
