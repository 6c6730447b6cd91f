"""Files the daemon keeps across restarts (the volume last chosen, the room's echo path).

Under systemd they live in the unit's StateDirectory= ($STATE_DIRECTORY, /var/lib/mira-agent),
which survives restarts, reboots and package upgrades; run by hand with no such folder, nothing
is kept. A file is written whole (a new file renamed over the old: a power cut leaves the old
one or the new one, never half of either); one that cannot be read is reported once and ignored.
"""

from __future__ import annotations

import logging
import os
import threading
from pathlib import Path
from typing import Mapping

from agent.ratelog import RateLimitedLog

log = logging.getLogger(__name__)


def state_folder(environ: Mapping[str, str] = os.environ) -> Path | None:
    """$STATE_DIRECTORY's first folder, or None (not run by systemd with StateDirectory=)."""
    folder = environ.get("STATE_DIRECTORY", "").split(":")[0]
    return Path(folder) if folder else None


class StateFile:
    """One file `name` in `folder` (None: keeps nothing); `what` names it in messages."""

    def __init__(self, folder: Path | None, name: str, what: str):
        self.path = folder / name if folder is not None else None
        self.what = what
        self._lock = threading.Lock()  # (saved from more than one thread)
        self._ratelog = RateLimitedLog(log, interval_s=600)

    def read(self, instead: str) -> bytes | None:
        """The file's bytes; None when absent or unreadable (then one warning says so and
        what is done `instead`)."""
        if self.path is None:
            return None
        try:
            return self.path.read_bytes()
        except FileNotFoundError:
            return None
        except OSError as e:
            log.warning("cannot read %s from %s (%s); %s", self.what, self.path,
                        e.strerror or e, instead)
            return None

    def write(self, data: bytes) -> None:
        """Keep data for the next start; a failure warns (at most every 10 minutes)."""
        if self.path is None:
            return
        with self._lock:
            tmp = self.path.with_name(f".{self.path.name}.new")
            try:
                tmp.write_bytes(data)
                os.replace(tmp, self.path)
            except OSError as e:
                self._ratelog(logging.WARNING, "save", f"cannot save {self.what} to {self.path} "
                              f"({e.strerror or e}); it will not survive a restart (the folder "
                              "must exist and be writable by the daemon's user: systemd's "
                              "StateDirectory= makes it so)")
