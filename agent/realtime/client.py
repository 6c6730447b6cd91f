"""One Mira Realtime connection: a thin I/O shell on websocket-client around the pure events module.

A reader thread turns frames into events and hands each to `on_event`; the conversation thread
sends. Liveness is checked with pings: a socket that goes silent is declared dead, not waited on.
"""

from __future__ import annotations

import logging
import select
import socket
import ssl
import threading
import time
from collections import deque
from dataclasses import dataclass
from typing import Callable
from urllib.parse import urlsplit

import websocket

from agent.errors import ConnectionFailed, ProtocolError
from agent.realtime import events
from agent.realtime.settings import ServerSettings, check_url

log = logging.getLogger(__name__)

SUBPROTOCOL = "mira-realtime.v1"
KEY_PREFIX = "openai-insecure-api-key."
CONFIRM_S = 0.25  # while a turn streams, how often the server is asked what it has read (a ping)
MAX_FRAME_BYTES = 4 * 1024 * 1024  # far above any real event; stops a hostile server's memory bomb
CLOSE_TOO_BIG = 1009


class _TooBig(Exception):
    """A frame (or a fragmented message) announced more than MAX_FRAME_BYTES: not read."""

    def __init__(self, size: int):
        super().__init__(size)
        self.size = size


def _guard_size(ws: websocket.WebSocket) -> None:
    """Refuse an oversized frame from its header, before its payload is read into memory.

    websocket-client reads a whole frame (and joins a fragmented message) before handing it over,
    so a length check afterwards is too late: a hostile server could announce 2**63 bytes.
    """
    frames, messages = ws.frame_buffer, ws.cont_frame
    recv_length, add = frames.recv_length, messages.add

    def checked_length() -> None:
        recv_length()
        if frames.length is not None and frames.length > MAX_FRAME_BYTES:
            raise _TooBig(frames.length)

    def checked_add(frame) -> None:
        held = len(messages.cont_data[1]) if messages.cont_data else 0
        if held + len(frame.data) > MAX_FRAME_BYTES:
            raise _TooBig(held + len(frame.data))
        add(frame)

    frames.recv_length = checked_length
    messages.add = checked_add


@dataclass(frozen=True)
class Closed:
    """The connection ended; failure is None when we closed it ourselves."""

    failure: ConnectionFailed | None


@dataclass(frozen=True)
class BadFrame:
    """A frame that could not be understood; the connection goes on."""

    error: ProtocolError


Posted = events.ServerEvent | Closed | BadFrame


def _handshake_failure(e: Exception, host: str, timeout_s: float | None = None) -> ConnectionFailed:
    """A connect-time exception as a ConnectionFailed whose message a person can act on.

    Each message is "what failed; what to check" (`mira-agent check` shows the two parts on two
    lines), names the setting or command that fixes it, and never a class name.
    """
    within = f" within {timeout_s:g} s" if timeout_s else " in time"
    if isinstance(e, websocket.WebSocketBadStatusException):
        code = e.status_code
        if code in (401, 403):
            return ConnectionFailed(f"{host} refused the API key (HTTP {code}); check the key in "
                                    f"the mira-api-key credential, server.api_key_file or MIRA_API_KEY",
                                    status=code)
        return ConnectionFailed(f"{host} answered the WebSocket upgrade with HTTP {code}; check "
                                f"[server] url", status=code)
    if isinstance(e, websocket.WebSocketAddressException):  # wraps the resolver's gaierror
        e = e.args[0] if e.args and isinstance(e.args[0], OSError) else socket.gaierror()
    if isinstance(e, socket.gaierror):
        return ConnectionFailed(f"cannot resolve {host} (DNS); check the network connection and "
                                f"the host in [server] url")
    if isinstance(e, ssl.SSLCertVerificationError):
        return ConnectionFailed(f"TLS certificate of {host} is not trusted ({e.verify_message}); "
                                f"check the system clock (timedatectl) and the CA certificates")
    if isinstance(e, ssl.SSLError):
        return ConnectionFailed(f"TLS handshake with {host} failed ({e.reason or e.strerror or 'no reason'}); "
                                f"check that [server] url is the wss:// endpoint")
    if isinstance(e, ConnectionRefusedError):
        return ConnectionFailed(f"{host} refused the connection; is the server up and [server] url right?")
    if isinstance(e, (socket.timeout, websocket.WebSocketTimeoutException, TimeoutError)):
        stage = "TLS handshake" if "handshake operation" in str(e) else "handshake"
        return ConnectionFailed(f"{host} did not answer the {stage}{within}; check the network "
                                f"connection and [server] url")
    if isinstance(e, OSError):
        return ConnectionFailed(f"network error talking to {host}: {e.strerror or e}; check the "
                                f"network connection")
    if isinstance(e, websocket.WebSocketException):
        return ConnectionFailed(f"{host} broke off the WebSocket handshake ({e}); check [server] url")
    return ConnectionFailed(f"connection to {host} failed: {e or type(e).__name__}")


class RealtimeConnection:
    """One session's socket: open(), send(), close(); everything received goes to on_event."""

    def __init__(self, settings: ServerSettings, api_key: str, on_event: Callable[[Posted], None]):
        check_url(settings.url)
        self._settings = settings
        self._key = api_key
        self._on_event = on_event
        self._ws: websocket.WebSocket | None = None
        self._thread: threading.Thread | None = None
        self._closing = threading.Event()
        self._ended = False
        self._lock = threading.Lock()
        self.host = urlsplit(settings.url).hostname or settings.url
        self.bytes_sent = 0
        self.bytes_received = 0
        self.last_heard: float | None = None
        """time.monotonic() of the last frame the server sent (None before the handshake)."""
        self.sent_events = 0
        """Events sent so far (counted once each send has returned)."""
        self.confirmed_events = 0
        """Events the server had read when it answered our last ping: a pong comes back only after
        everything sent before its ping, so these reached the server; later ones may not have."""
        self._brisk = False

    # -- lifecycle ---------------------------------------------------------------------------

    def open(self) -> None:
        """Connect in the background; the outcome arrives as events (session.created or Closed)."""
        self._thread = threading.Thread(target=self._run, name="realtime-reader", daemon=True)
        self._thread.start()

    def close(self, code: int = 1000) -> None:
        """Close cleanly (status `code`) and stop the reader; safe to call twice, from any thread."""
        self._closing.set()
        ws = self._ws
        if ws is not None and ws.connected:
            try:
                ws.close(status=code, timeout=0.5)
            except Exception:  # already broken: nothing left to close politely
                pass
            try:
                ws.shutdown()
            except Exception:
                pass
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=2.0)

    def set_liveness(self, brisk: bool) -> None:
        """Brisk pings while a turn is in progress: a dead socket must be found while the audio
        the daemon keeps can still carry the turn (server.turn_liveness_s); slower between turns."""
        self._brisk = brisk

    def _ping_timing(self) -> tuple[float, float]:
        s = self._settings
        if not self._brisk:
            return s.ping_interval_s, s.ping_timeout_s
        return (min(s.ping_interval_s, s.turn_liveness_s / 3),
                min(s.ping_timeout_s, s.turn_liveness_s * 2 / 3))

    def abort(self) -> None:
        """Drop the socket without a close handshake (used when it is already dead)."""
        self._closing.set()
        self._shutdown()

    # -- sending -----------------------------------------------------------------------------

    def send(self, event: dict) -> bool:
        """Send one client event; False (and the reader reports Closed) when the socket is gone."""
        ws = self._ws
        if ws is None or not ws.connected or self._closing.is_set():
            return False
        text = events.encode(event)
        try:
            ws.send(text)
        except (websocket.WebSocketException, OSError):
            self._shutdown()  # the reader sees the broken socket and reports Closed
            return False
        self.bytes_sent += len(text)
        self.sent_events += 1
        return True

    def _shutdown(self) -> None:
        ws = self._ws
        if ws is not None:
            try:
                ws.shutdown()
            except Exception:
                pass

    # -- the reader thread -------------------------------------------------------------------

    def _post_end(self, failure: ConnectionFailed | None) -> None:
        with self._lock:
            if self._ended:
                return
            self._ended = True
        self._on_event(Closed(None if self._closing.is_set() and failure is None else failure))

    def _run(self) -> None:
        s = self._settings
        # UTF-8 is checked by _deliver, so a bad text frame is skipped rather than ending the session.
        ws = websocket.WebSocket(sslopt={"cert_reqs": ssl.CERT_REQUIRED}, enable_multithread=True,
                                 skip_utf8_validation=True)
        _guard_size(ws)
        try:
            ws.connect(s.url, subprotocols=[SUBPROTOCOL, KEY_PREFIX + self._key],
                       timeout=s.connect_timeout_s, suppress_origin=True)
        except Exception as e:
            failure = _handshake_failure(e, self.host, s.connect_timeout_s)
            failure.__cause__ = e  # kept for the retry policy (retry.is_refused), never shown
            self._post_end(failure)
            return
        self._ws = ws
        if self._closing.is_set():
            ws.close()
            self._post_end(None)
            return
        self._post_end(self._read_loop(ws))

    def _read_loop(self, ws: websocket.WebSocket) -> ConnectionFailed | None:
        s = self._settings
        last_rx = self.last_heard = time.monotonic()
        ping_sent: float | None = None   # the ping that awaits an answer (any frame answers)
        last_ping = 0.0
        marks: deque[int] = deque(maxlen=64)  # per ping awaiting its pong: events sent before it
        ws.settimeout(s.ping_timeout_s)
        while not self._closing.is_set():
            now = time.monotonic()
            interval, timeout = self._ping_timing()
            if ping_sent is not None and now - ping_sent > timeout:
                ws.shutdown()
                return ConnectionFailed(f"{self.host} stopped answering pings: silent for "
                                        f"{now - last_rx:.1f} s (no pong within {timeout:g} s); "
                                        f"the connection is dead")
            # While a turn streams, frames not yet confirmed are pinged for every CONFIRM_S: a
            # drop then costs at most that much audio sent twice, never a frame lost.
            unconfirmed = self._brisk and self.sent_events > (marks[-1] if marks else self.confirmed_events)
            if ping_sent is None and (now - last_rx >= interval
                                      or unconfirmed and now - last_ping >= CONFIRM_S):
                marks.append(self.sent_events)
                try:
                    ws.ping()
                except (websocket.WebSocketException, OSError):
                    return None if self._closing.is_set() else ConnectionFailed(
                        f"connection to {self.host} was lost")
                ping_sent = last_ping = now
            if not self._readable(ws, 0.2):
                continue
            try:
                opcode, frame = ws.recv_data_frame(control_frame=True)
            except _TooBig as e:
                return self._too_big(ws, e.size)
            except (websocket.WebSocketException, OSError, ValueError) as e:
                if self._closing.is_set():
                    return None
                if isinstance(e, websocket.WebSocketProtocolException):
                    return ConnectionFailed(f"{self.host} broke the WebSocket protocol")
                return ConnectionFailed(f"connection to {self.host} was lost")
            last_rx = self.last_heard = time.monotonic()
            ping_sent = None
            if opcode == websocket.ABNF.OPCODE_CLOSE:
                return self._closed_by_server(frame.data)
            if opcode in (websocket.ABNF.OPCODE_PING, websocket.ABNF.OPCODE_PONG):
                if opcode == websocket.ABNF.OPCODE_PONG and marks:
                    self.confirmed_events = max(self.confirmed_events, marks.popleft())
                if opcode == websocket.ABNF.OPCODE_PING:
                    try:
                        ws.pong(frame.data)
                    except (websocket.WebSocketException, OSError):
                        pass
                continue
            self.bytes_received += len(frame.data)
            self._deliver(opcode, frame.data)
        return None

    @staticmethod
    def _readable(ws: websocket.WebSocket, timeout: float) -> bool:
        sock = ws.sock
        if sock is None:
            return False
        if isinstance(sock, ssl.SSLSocket) and sock.pending():
            return True
        try:
            r, _, _ = select.select([sock], [], [], timeout)
        except (OSError, ValueError):
            return True  # let recv raise the real error
        return bool(r)

    def _too_big(self, ws: websocket.WebSocket, size: int) -> ConnectionFailed | None:
        """The stream is mid-frame and cannot be resynchronised: close 1009 and let it reconnect."""
        try:
            ws.send_close(CLOSE_TOO_BIG)
        except Exception:
            pass
        self._shutdown()
        if self._closing.is_set():
            return None
        return ConnectionFailed(f"{self.host} sent a message of {size} bytes, over the "
                                f"{MAX_FRAME_BYTES} byte limit; the connection was closed (1009)",
                                close_code=CLOSE_TOO_BIG)

    def _deliver(self, opcode: int, data: bytes) -> None:
        if len(data) > MAX_FRAME_BYTES:  # kept as a second line of defence behind _guard_size
            self._on_event(BadFrame(ProtocolError(f"frame over the size limit: {len(data)} bytes, "
                                                  f"at most {MAX_FRAME_BYTES}")))
            return
        if opcode == websocket.ABNF.OPCODE_BINARY:
            self._on_event(BadFrame(ProtocolError("binary frame: the realtime protocol sends "
                                                  "JSON text frames only")))
            return
        try:
            text = data.decode("utf-8")
            event = events.parse(text)
        except UnicodeDecodeError:
            self._on_event(BadFrame(ProtocolError("text frame is not valid UTF-8")))
            return
        except ProtocolError as e:
            self._on_event(BadFrame(e))
            return
        self._on_event(event)

    def _closed_by_server(self, data: bytes) -> ConnectionFailed | None:
        code = int.from_bytes(data[:2], "big") if len(data) >= 2 else 1005
        reason = data[2:].decode("utf-8", "replace")[:200]
        try:
            self._ws.send_close(code if code != 1005 else 1000)
        except Exception:
            pass
        self._shutdown()
        if self._closing.is_set():
            return None
        if code == 1008:
            return ConnectionFailed(f"{self.host} closed the session as a policy violation (1008: "
                                    f"{reason or 'no reason'}); usually a refused API key: check the "
                                    f"mira-api-key credential, server.api_key_file or MIRA_API_KEY",
                                    close_code=code)
        return ConnectionFailed(f"{self.host} closed the connection ({code}"
                                f"{': ' + reason if reason else ''})", close_code=code)
