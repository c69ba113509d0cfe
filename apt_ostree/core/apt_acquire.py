"""APT's download callbacks (apt_pkg.Acquire) to apt-ostree's Progress."""

from __future__ import annotations

from typing import TYPE_CHECKING, cast

import apt_pkg

from apt_ostree.progress import Progress

if TYPE_CHECKING:
    import apt.progress.base


class AcquireProgress:
    """apt_pkg's acquire callbacks to our Progress (a bar on a terminal, quiet otherwise): the
    interface of python-apt's apt.progress.base.AcquireProgress, without importing the ``apt``
    package (urllib, http, email: a fifth of a command's start-up)."""

    def __init__(self, progress: Progress) -> None:
        self.progress = progress
        self._failed: dict[str, str] = {}  # an item's description -> its last failure
        # set by apt_pkg while it fetches
        self.current_bytes = self.current_cps = self.fetched_bytes = self.last_bytes = self.total_bytes = 0.0
        self.current_items = self.total_items = 0
        self.elapsed_time = 0.0

    def as_apt(self) -> apt.progress.base.AcquireProgress:
        """For the type checker: apt_pkg takes any object with these methods."""
        return cast("apt.progress.base.AcquireProgress", self)

    def start(self) -> None:
        pass

    @property
    def failed(self) -> list[str]:
        """The items that failed and were not fetched in another form afterwards, one line each."""
        return list(self._failed.values())

    def done(self, item: apt_pkg.AcquireItemDesc) -> None:
        self._failed.pop(str(item.description), None)  # (Packages.xz failed, then Packages came)

    def fetch(self, item: apt_pkg.AcquireItemDesc) -> None:
        pass

    def ims_hit(self, item: apt_pkg.AcquireItemDesc) -> None:
        pass

    def media_change(self, media: str, drive: str) -> bool:
        return False

    def fail(self, item: apt_pkg.AcquireItemDesc) -> None:
        """An index that could not be fetched (APT's "Failed to fetch"), as one line."""
        error = " ".join(str(item.owner.error_text).split())
        # an item done (an IMS hit, a flat repository's absent Release) is apt-get's "Ign:"; one still
        # fetching goes on with another form (a flat repository's Packages.xz, then Packages): see done()
        if item.owner.status != item.owner.STAT_DONE:
            self._failed[str(item.description)] = (f"cannot fetch {item.description}: {error}" if error else
                                                   f"cannot fetch {item.description}")

    def pulse(self, owner: apt_pkg.Acquire) -> bool:
        if self.total_bytes:
            self.progress.download(int(self.current_bytes), int(self.total_bytes))
        return not self.progress.cancelled

    def stop(self) -> None:
        if self.total_bytes:
            self.progress.download(int(self.total_bytes), int(self.total_bytes))
