"""The room's echo path, kept across the daemon's restarts.

A speaker in a box hears itself the same way after a reboot: the path the echo canceller
learnt is saved (in $STATE_DIRECTORY, agent.statefile) each time a reply ends with the path
trusted, and given back at the next start, so the first reply after a restart is looked for
like any other (its gate opens about 0.5 s in) instead of learnt from nothing (several seconds
in which a user's voice cannot interrupt). A box moved to another room keeps nothing wrong for
long: a path that explains none of the new echo is dropped at the first reply (Realigner).
"""

from __future__ import annotations

import io
import logging
import os
import threading
from pathlib import Path
from typing import Mapping

import numpy as np

from agent.statefile import StateFile, state_folder

log = logging.getLogger(__name__)

FILE_NAME = "echo-path.npy"


class EchoPathStore:
    """The learnt echo path (float32 impulse response, 24 kHz) in `folder`/echo-path.npy."""

    def __init__(self, folder: Path | None, expected: int):
        self._file = StateFile(folder, FILE_NAME, "the learnt echo path")
        self._expected = expected  # samples of a path (LinearEcho: its partitions x its block)

    @property
    def path(self) -> Path | None:
        """The file (None: nothing is kept)."""
        return self._file.path

    @classmethod
    def from_environment(cls, expected: int,
                         environ: Mapping[str, str] = os.environ) -> "EchoPathStore":
        return cls(state_folder(environ), expected)

    def load(self) -> np.ndarray | None:
        """The saved path, or None (none saved, or unusable: then one warning says so)."""
        instead = "the echo canceller learns the room afresh"
        data = self._file.read(instead)
        if data is None:
            return None
        try:
            h = np.load(io.BytesIO(data), allow_pickle=False)
        except (ValueError, OSError, EOFError) as e:
            log.warning("%s is not a saved echo path (%s); %s", self.path, e, instead)
            return None
        if h.shape != (self._expected,) or h.dtype.kind != "f" or not np.all(np.isfinite(h)):
            log.warning("%s holds a path of shape %s, not %d finite samples; %s", self.path,
                        h.shape, self._expected, instead)
            return None
        log.info("echo path learnt before loaded from %s", self.path)
        return h.astype(np.float64)

    def save(self, impulse: np.ndarray) -> None:
        """Keep the path for the next start (written whole)."""
        buffer = io.BytesIO()
        np.save(buffer, np.asarray(impulse, dtype=np.float32), allow_pickle=False)
        self._file.write(buffer.getvalue())

    def save_soon(self, impulse: np.ndarray) -> None:
        """save() on a thread of its own: the canceller calls this from the microphone's frame
        path, which a slow SD card must not hold up (a power cut mid-write leaves the old file:
        writes are whole)."""
        threading.Thread(target=self.save, args=(np.array(impulse),), name="echo-path-save",
                         daemon=True).start()
