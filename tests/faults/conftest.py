"""The faults tier: SIGKILLs at every step a change reports, on sysroot directories (in-process CLI)
and of apt-ostreed mid-transaction; each followed by the checks that nothing was lost."""

from tests.dbus.conftest import bus, dbus_repo  # noqa: F401 (fixtures)
from tests.root.conftest import aot_repo, layer_root, sysroot, updates, updates_template  # noqa: F401 (fixtures)
