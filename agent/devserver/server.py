"""The local Mira-compatible server: the WebSocket listener, the key check, and an in-process handle.

`DevServer` runs its asyncio loop on a background thread, so tests and the demo start it with
one call, drive it with a real client on 127.0.0.1, and read what it recorded.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import re
import threading
import time
from http import HTTPStatus

from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import ConnectionClosed
from websockets.protocol import State
from websockets.http11 import Request, Response

from agent.devserver.asr import Recognizer
from agent.devserver.events import Ids
from agent.devserver.faults import Faults
from agent.devserver.record import Handshake, Recorder, SessionRecord
from agent.devserver.script import Script
from agent.devserver.session import Session
from agent.devserver.tts import Synthesizer
from agent.errors import ConfigError
from agent.realtime.settings import is_loopback

log = logging.getLogger(__name__)

SUBPROTOCOL = "mira-realtime.v1"
KEY_PREFIX = "openai-insecure-api-key."
MAX_MESSAGE = 16 * 2**20
_KEY_RE = re.compile(r"(openai-insecure-api-key\.)[^\s,;'\"]+|(Bearer\s+)[^\s,;'\"]+", re.IGNORECASE)


class _RedactKeys(logging.Filter):
    """websockets logs handshake headers at debug level: the key must never reach a log."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        redacted = _KEY_RE.sub(lambda m: (m.group(1) or m.group(2)) + "***", message)
        if redacted != message:
            record.msg, record.args = redacted, None
        return True


_ws_log = logging.getLogger("agent.devserver.ws")
_ws_log.addFilter(_RedactKeys())


def _offered(request: Request) -> list[str]:
    return [p.strip() for h in request.headers.get_all("Sec-WebSocket-Protocol") for p in h.split(",")]


class DevServer:
    """A Mira Realtime server on this machine, for the demo, tests and trying the device offline.

    with DevServer() as server:            # 127.0.0.1, a free port, any key accepted
        connect(server.url, ...)
        server.recorder.wait_for(lambda: server.last_session.turns)
    """

    def __init__(self, host: str = "127.0.0.1", port: int = 0, api_key: str | None = None,
                 script: Script | None = None, *, allow_remote: bool = False, speed: float = 10.0,
                 chunk_ms: int = 100, ping_interval: float | None = 20.0, ping_timeout: float | None = 20.0,
                 frame_ms: int | None = 20, reply_delay_ms: int = 0):
        if not is_loopback(host) and not allow_remote:
            raise ConfigError(f"devserver: host {host} is not a loopback address; the dev server has no "
                              f"real security, so bind 127.0.0.1 or pass --allow-remote")
        if speed <= 0 or chunk_ms <= 0 or reply_delay_ms < 0:
            raise ConfigError("devserver: speed and chunk_ms must be positive, reply_delay_ms not negative")
        self.host = host
        self.port = port
        self._api_key = api_key
        self.script = script or Script.default()
        """What the server understands and answers; may be replaced while running."""
        self.speed = speed
        """How much faster than real time reply audio is sent (math.inf: no pause between chunks)."""
        self.chunk_ms = chunk_ms
        """Milliseconds of audio in each response.audio.delta."""
        self.frame_ms = frame_ms
        """Every append must carry exactly one frame this long in the session's input format
        (SessionRecord.bad_appends lists those that do not); None accepts any size."""
        self.reply_delay_ms = reply_delay_ms
        """Time between asking for a reply (or the VAD ending the turn) and its response.created:
        0 answers at once; the real service takes a few hundred ms."""
        self.faults = Faults()
        """Fault knobs (see faults.py), read by the server as it goes."""
        self.recorder = Recorder()
        self.ids = Ids()
        self.tts = Synthesizer()
        self._ping = (ping_interval, ping_timeout)
        self._live: dict[str, Session] = {}
        self._recognizers: list[Recognizer] = []
        self._recognizer_script: Script | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._stopping: asyncio.Event | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None

    # -- lifecycle -----------------------------------------------------------------------------

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"ws://{host}:{self.port}/v1/realtime"

    @property
    def sessions(self) -> list[SessionRecord]:
        return self.recorder.sessions

    @property
    def last_session(self) -> SessionRecord | None:
        return self.recorder.sessions[-1] if self.recorder.sessions else None

    def wait_for(self, predicate, timeout: float = 10.0):
        """Block until predicate() is truthy, re-checked whenever the server records something."""
        return self.recorder.wait_for(predicate, timeout)

    def start(self) -> int:
        """Listen on a background thread; returns the bound port. ConfigError if it cannot bind.

        After stop(), start() listens again on the same port (a server killed and back).
        """
        if self._thread is not None:
            return self.port
        self._ready.clear()
        self._thread = threading.Thread(target=self._run_thread, name="devserver", daemon=True)
        self._thread.start()
        self._ready.wait()
        if self._error is not None:
            self._thread.join()
            self._thread = None
            error, self._error = self._error, None
            raise ConfigError(f"devserver: cannot listen on {self.host}:{self.port} ({error}); "
                              f"pick another --port or stop what is using it") from None
        return self.port

    def stop(self) -> None:
        """Close every session (1001) and stop listening; safe to call twice."""
        thread, self._thread = self._thread, None
        if thread is None:
            return
        if self._loop is not None and self._stopping is not None:
            self._loop.call_soon_threadsafe(self._stopping.set)
        thread.join()

    close = stop

    def __enter__(self) -> DevServer:
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def _run_thread(self) -> None:
        try:
            asyncio.run(self._main())
        except BaseException as e:  # reported to start(); the thread must not die silently
            if not self._ready.is_set():
                self._error = e
                self._ready.set()
            else:
                log.exception("devserver: the server loop failed")

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stopping = asyncio.Event()
        interval, timeout = self._ping
        async with serve(self._handler, self.host, self.port, subprotocols=[SUBPROTOCOL],
                         select_subprotocol=self._select, process_request=self._check_request,
                         max_size=MAX_MESSAGE, ping_interval=interval, ping_timeout=timeout,
                         close_timeout=2, logger=_ws_log) as server:
            self.port = server.sockets[0].getsockname()[1]
            log.info("devserver: listening on %s (%s)", self.url,
                     "any key accepted" if self._api_key is None else "key required")
            self._ready.set()
            await self._stopping.wait()
            for session in list(self._live.values()):
                if session.silenced:  # it would never read the close frame
                    session.ws.transport.abort()
            server.close()
            await server.wait_closed()

    # -- the handshake -------------------------------------------------------------------------

    @staticmethod
    def _select(connection: ServerConnection, offered: list[str]) -> str | None:
        return SUBPROTOCOL if SUBPROTOCOL in offered else None

    def _check_request(self, connection: ServerConnection, request: Request) -> Response | None:
        status, text = self._judge(request)
        self.recorder.handshakes.append(Handshake(time.monotonic(), request.path, status))
        self.recorder.changed()
        if status == 101:
            return None
        log.info("devserver: refused an upgrade with %d: %s", status, text)
        return connection.respond(status, text + "\n")

    def _judge(self, request: Request) -> tuple[int, str]:
        if self.faults.refuse_status:
            return self.faults.refuse_status, "Refused by the devserver's refuse_status fault."
        offered = _offered(request)
        if SUBPROTOCOL not in offered:
            return HTTPStatus.BAD_REQUEST, f"Offer the WebSocket subprotocol {SUBPROTOCOL}."
        keys = [p[len(KEY_PREFIX):] for p in offered if p.startswith(KEY_PREFIX)]
        auth = request.headers.get("Authorization", "")
        if auth.lower().startswith("bearer "):
            keys.append(auth[7:].strip())
        if not keys or not any(keys):
            return HTTPStatus.UNAUTHORIZED, f"Missing API key: offer the subprotocol {KEY_PREFIX}<key>."
        if self._api_key is not None and not any(
                hmac.compare_digest(k.encode(), self._api_key.encode()) for k in keys):
            return HTTPStatus.UNAUTHORIZED, "Incorrect API key provided."
        return 101, ""

    async def _handler(self, ws: ServerConnection) -> None:
        record = SessionRecord(self.ids.new("sess"), ws.request.path if ws.request else "")
        self.recorder.sessions.append(record)
        self.recorder.changed()
        if self.faults.reject_key_after_accept:
            await ws.close(1008, "invalid api key")
            record.close_code, record.closed = 1008, True
            self.recorder.changed()
            return
        session = Session(ws, self, record)
        self._live[record.session_id] = session
        try:
            await session.run()
        finally:
            self._live.pop(record.session_id, None)

    # -- speech recognisers: slow to create, so reused across sessions -------------------------

    async def acquire_recognizer(self) -> Recognizer:
        if self._recognizer_script is not self.script:
            self._recognizers.clear()
            self._recognizer_script = self.script
        if self._recognizers:
            return self._recognizers.pop()
        script = self.script
        return await asyncio.to_thread(Recognizer, script.phrases, script.prefixes)

    def release_recognizer(self, recognizer: Recognizer) -> None:
        if self._recognizer_script is self.script and len(self._recognizers) < 4:
            self._recognizers.append(recognizer)

    # -- fault actions on open sessions, callable from any thread ------------------------------

    def _on_sessions(self, action, session_id: str | None = None, timeout: float = 5.0) -> int:
        """Run `action(session)` on the loop for each open session (or one); how many it touched."""
        if self._loop is None or self._thread is None:
            return 0

        async def each() -> int:
            targets = [s for sid, s in self._live.items()
                       if session_id in (None, sid) and s.ws.state is State.OPEN]
            for s in targets:
                try:
                    await action(s)
                except ConnectionClosed:
                    pass  # it went away meanwhile: the fault happened anyway
            return len(targets)

        return asyncio.run_coroutine_threadsafe(each(), self._loop).result(timeout)

    def abort_connections(self, session_id: str | None = None) -> int:
        """Reset the TCP connection(s) at once: no close frame, as when the server dies."""
        async def act(s: Session) -> None:
            s.ws.transport.abort()
        return self._on_sessions(act, session_id)

    def close_connections(self, code: int = 1001, reason: str = "", session_id: str | None = None) -> int:
        """Close the session(s) with a close frame of this code (1001 going away, 1011, 1008...)."""
        async def act(s: Session) -> None:
            await s.close(code, reason)
        return self._on_sessions(act, session_id)

    def expire_sessions(self, session_id: str | None = None) -> int:
        """Send the error session_expired, then close 1001, as a session at its maximum length."""
        async def act(s: Session) -> None:
            await s.expire()
        return self._on_sessions(act, session_id)

    def silence_connections(self, session_id: str | None = None) -> int:
        """Black-hole the session(s): no reading (so no pongs), no sending, no FIN."""
        async def act(s: Session) -> None:
            s.silence()
        return self._on_sessions(act, session_id)

    def send_raw(self, frame: str | bytes, session_id: str | None = None) -> int:
        """Send one arbitrary frame (str: text frame, bytes: binary frame), unrecorded, unchecked."""
        async def act(s: Session) -> None:
            await s.ws.send(frame)
        return self._on_sessions(act, session_id)

    def write_raw(self, data: bytes, session_id: str | None = None) -> int:
        """Write bytes straight onto the TCP stream, outside WebSocket framing (a broken frame)."""
        async def act(s: Session) -> None:
            s.ws.transport.write(data)
        return self._on_sessions(act, session_id)

    def live_sessions(self) -> list[str]:
        """Ids of the sessions open now."""
        return list(self._live)

    def __repr__(self) -> str:
        return f"DevServer({self.url}, sessions={len(self.recorder.sessions)})"
