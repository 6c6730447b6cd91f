"""What one realtime session has seen: responses in flight, audio per item, text so far, costs."""

from __future__ import annotations

from dataclasses import dataclass, field

from agent.audio.base import SAMPLE_RATE


@dataclass
class SessionLedger:
    """Bookkeeping of one session; the conversation thread is its only user."""

    opened_at: float
    """When the conversation asked for a session (the trigger)."""
    ready_at: float | None = None
    """When the current connection's session was ready; None while there is none."""
    attempts: int = 0
    """Connections tried for this conversation (more than one after a failure or a drop)."""
    open_s: float = 0.0
    """Seconds sessions were open, over the connections that ended (billed time)."""
    active_response: str | None = None
    """Id of the response in flight (between response.created and response.done)."""
    received: dict[str, int] = field(default_factory=dict)
    """Samples (24 kHz) of reply audio received per item_id."""
    speaking_item: str | None = None
    """The assistant audio item being played."""
    samples_up: int = 0
    samples_down: int = 0
    usage: dict[str, int] = field(default_factory=dict)
    pending_calls: list = field(default_factory=list)

    def disconnected(self, now: float) -> None:
        """The current connection ended: its open time is counted."""
        if self.ready_at is not None:
            self.open_s += now - self.ready_at
            self.ready_at = None

    def audio_received(self, item_id: str, samples: int) -> None:
        self.received[item_id] = self.received.get(item_id, 0) + samples
        self.samples_down += samples
        self.speaking_item = item_id

    def truncate_ms(self, item_id: str, played_samples: int) -> int:
        """audio_end_ms for a truncate: what was played, never past what was received."""
        samples = min(played_samples, self.received.get(item_id, 0))
        return samples * 1000 // SAMPLE_RATE

    def add_usage(self, usage: dict) -> None:
        for key in ("total_tokens", "input_tokens", "output_tokens"):
            value = usage.get(key)
            if isinstance(value, int):
                self.usage[key] = self.usage.get(key, 0) + value

    def summary(self, now: float) -> str:
        up = self.samples_up / SAMPLE_RATE
        down = self.samples_down / SAMPLE_RATE
        tokens = ", ".join(f"{k}={v}" for k, v in sorted(self.usage.items())) or "no usage reported"
        open_s = self.open_s + (now - self.ready_at if self.ready_at is not None else 0.0)
        if not open_s:
            tries = f"{self.attempts} attempt{'s' if self.attempts != 1 else ''}"
            return f"never connected ({tries} in {now - self.opened_at:.1f} s)"
        return (f"connected {open_s:.1f} s, audio up {up:.1f} s, "
                f"audio down {down:.1f} s, {tokens}")


@dataclass
class History:
    """The text of the conversation so far, replayed into a new session after a reconnect."""

    turns: list[tuple[str, str]] = field(default_factory=list)
    limit: int = 20

    def add(self, role: str, text: str) -> None:
        text = text.strip()
        if text:
            self.turns.append((role, text))
            del self.turns[:-self.limit]

    def clear(self) -> None:
        self.turns.clear()
