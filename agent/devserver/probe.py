"""A bare realtime client for poking a server by hand: tests, fuzzing, debugging the devserver.

Not the daemon's client (agent.realtime): this one sends exactly what it is given, so it can
also send what a good client never would.
"""

from __future__ import annotations

import base64
import json
import time
from typing import Any, Callable

import websocket

from agent.devserver.server import KEY_PREFIX, SUBPROTOCOL

Check = Callable[[dict[str, Any]], None]


class Closed(ConnectionError):
    """The server closed the connection with a close frame; `code` is its close code."""

    def __init__(self, code: int):
        super().__init__(f"the server closed the connection with code {code}")
        self.code = code


class Probe:
    """One connection: send(event), expect(type) -> event; every event kept in `received`.

    check_sent / check_received (e.g. the conformance lints) run on every JSON event.
    """

    def __init__(self, url: str, key: str | None = "dev-key", *, timeout: float = 5.0,
                 check_sent: Check | None = None, check_received: Check | None = None,
                 subprotocols: list[str] | None = None):
        if subprotocols is None:
            subprotocols = [SUBPROTOCOL] + ([KEY_PREFIX + key] if key else [])
        self.timeout = timeout
        self.check_sent = check_sent
        self.check_received = check_received
        self.received: list[dict[str, Any]] = []
        self.close_code: int | None = None
        self.ws = websocket.create_connection(url, subprotocols=subprotocols, timeout=timeout)

    @property
    def subprotocol(self) -> str | None:
        return self.ws.getsubprotocol()

    def send(self, event: dict[str, Any] | str | bytes) -> None:
        """A dict is checked and sent as JSON; a str or bytes frame goes out as it is."""
        if isinstance(event, dict):
            if self.check_sent:
                self.check_sent(event)
            self.ws.send(json.dumps(event))
        elif isinstance(event, bytes):
            self.ws.send_binary(event)
        else:
            self.ws.send(event)

    def append(self, audio: bytes, frame_bytes: int = 960) -> None:
        """Stream audio in frames (960 bytes: 20 ms of pcm16 at 24 kHz)."""
        for i in range(0, len(audio), frame_bytes):
            self.send({"type": "input_audio_buffer.append",
                       "audio": base64.b64encode(audio[i:i + frame_bytes]).decode()})

    def recv(self, timeout: float | None = None) -> dict[str, Any]:
        """The next server event (TimeoutError if none comes in time)."""
        self.ws.settimeout(self.timeout if timeout is None else timeout)
        try:
            while True:
                opcode, frame = self.ws.recv_data_frame(True)
                if opcode == websocket.ABNF.OPCODE_CLOSE:
                    self.close_code = int.from_bytes(frame.data[:2], "big") if len(frame.data) >= 2 else 1005
                    raise Closed(self.close_code)
                if opcode in (websocket.ABNF.OPCODE_TEXT, websocket.ABNF.OPCODE_BINARY):
                    break
        except websocket.WebSocketTimeoutException:
            raise TimeoutError("no server event in time") from None
        event = json.loads(frame.data)
        if self.check_received:
            self.check_received(event)
        self.received.append(event)
        return event

    def expect(self, kind: str, timeout: float | None = None) -> dict[str, Any]:
        """Read events until one of this type; returns it (the others stay in `received`)."""
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"no {kind} in time")
            event = self.recv(left)
            if event["type"] == kind:
                return event

    def collect_until(self, kind: str, timeout: float | None = None) -> list[dict[str, Any]]:
        """Every event up to and including the next one of this type."""
        start = len(self.received)
        self.expect(kind, timeout)
        return self.received[start:]

    def close(self) -> None:
        """Close handshake if still open, then the TCP socket (a server waits for that)."""
        if self.ws.connected:
            self.ws.close(timeout=2)
        self.ws.shutdown()

    def __enter__(self) -> Probe:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
