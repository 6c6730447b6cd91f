"""Fault knobs: what a broken or hostile server does, settable at run time from any thread."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

MidResponseFault = Literal["abort", "close_1001", "close_1011", "session_expired", "silence"]


@dataclass
class Faults:
    """Set these on `DevServer.faults`; the server reads them as it goes."""

    mid_response: MidResponseFault | None = None
    """Fault the first audio response (any session) to reach `after_deltas` deltas; then None:
    abort (TCP reset, no close frame), close_1001 / close_1011 (a close frame with that code),
    session_expired (an error event, then close 1001), silence (stop reading and sending)."""
    after_deltas: int = 2
    """Audio deltas sent before the mid-response fault fires."""
    reject_key_after_accept: bool = False
    """Accept every upgrade, then close with 1008 before session.created (a key revoked late)."""
    refuse_status: int | None = None
    """Answer every upgrade with this HTTP status (e.g. 503) instead of accepting it."""
    answer_pings: bool = True
    """False: new sessions never read (so never pong) and never send after session.created."""
    max_session_s: float | None = None
    """End every session this long after it opened: error session_expired, then close 1001."""

    def take_mid_response(self) -> MidResponseFault | None:
        """The pending mid-response fault, cleared so it fires once."""
        fault, self.mid_response = self.mid_response, None
        return fault
