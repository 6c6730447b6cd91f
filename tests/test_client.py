"""The realtime connection over real sockets on 127.0.0.1."""

import asyncio
import base64
import hashlib
import json
import queue
import socket
import threading
import time

import pytest
from websockets.asyncio.server import serve
from websockets.datastructures import Headers
from websockets.http11 import Response

from agent.realtime import events as ev
from agent.realtime.client import BadFrame, Closed, RealtimeConnection
from agent.realtime.retry import Verdict, classify
from agent.realtime.settings import ServerSettings
from conformance import check_client_event

KEY = "sk-mira-test-123"


class _Server:
    """A scripted websockets server in a thread: `handler(ws)` is an async function."""

    def __init__(self, handler, process_request=None):
        self.handler = handler
        self.process_request = process_request
        self.headers: list[Headers] = []
        self.received: list[dict] = []
        self._ready = threading.Event()
        self._loop = asyncio.new_event_loop()
        self._stop: asyncio.Future | None = None
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        asyncio.set_event_loop(self._loop)
        self._loop.run_until_complete(self._main())

    async def _main(self):
        self._stop = self._loop.create_future()

        async def handle(ws):
            self.headers.append(ws.request.headers)
            await self.handler(ws, self)

        async with serve(handle, "127.0.0.1", 0, subprotocols=["mira-realtime.v1"],
                         process_request=self.process_request, ping_interval=None) as server:
            self.port = server.sockets[0].getsockname()[1]
            self._ready.set()
            await self._stop

    def __enter__(self):
        self._thread.start()
        assert self._ready.wait(5)
        return self

    def __exit__(self, *exc):
        self._loop.call_soon_threadsafe(self._stop.set_result, None)
        self._thread.join(5)

    @property
    def url(self):
        return f"ws://127.0.0.1:{self.port}/v1/realtime"


def _connect(url, **kw):
    got: queue.Queue = queue.Queue()
    settings = ServerSettings(url=url, connect_timeout_s=3, **kw)
    conn = RealtimeConnection(settings, KEY, got.put)
    conn.open()
    return conn, got


def _next(got, kind, timeout=5):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        item = got.get(timeout=max(0.01, deadline - time.monotonic()))
        if (isinstance(kind, type) and isinstance(item, kind)) or getattr(item, "type", None) == kind:
            return item
    raise AssertionError(f"no {kind} within {timeout} s")


async def _session(ws, server):
    await ws.send(json.dumps({"type": "session.created", "event_id": "e0", "session": {"id": "s"}}))
    async for message in ws:
        event = json.loads(message)
        server.received.append(event)
        if event["type"] == "input_audio_buffer.append":
            await ws.send(json.dumps({"type": "response.audio.delta", "event_id": "e1", "response_id": "r",
                                      "item_id": "i", "output_index": 0, "content_index": 0,
                                      "delta": event["audio"]}))


def test_connects_with_both_subprotocols_and_exchanges_events():
    """The key travels as the second subprotocol; sent events arrive, server events come back typed."""
    with _Server(_session) as srv:
        conn, got = _connect(srv.url)
        assert _next(got, "session.created").type == "session.created"
        frame = bytes(range(200)) * 4 + b"\x00" * 160
        assert conn.send(ev.append(frame))
        delta = _next(got, "response.audio.delta")
        assert delta.audio == frame
        conn.close()
        assert isinstance(_next(got, Closed), Closed)
        protocols = srv.headers[0]["Sec-WebSocket-Protocol"]
        assert [p.strip() for p in protocols.split(",")] == ["mira-realtime.v1", f"openai-insecure-api-key.{KEY}"]
        for e in srv.received:
            check_client_event(e)


def test_close_is_idempotent_and_reports_no_failure():
    with _Server(_session) as srv:
        conn, got = _connect(srv.url)
        _next(got, "session.created")
        conn.close()
        conn.close()
        assert _next(got, Closed).failure is None
        assert not conn.send(ev.commit())


def test_refused_key_is_an_auth_failure_that_never_shows_the_key():
    """HTTP 401 on the upgrade: AUTH verdict, a message naming where the key comes from."""
    def reject(connection, request):
        return Response(401, "Unauthorized", Headers(), b"bad key")

    with _Server(_session, process_request=reject) as srv:
        conn, got = _connect(srv.url)
        closed = _next(got, Closed)
        assert classify(closed.failure) is Verdict.AUTH
        assert "MIRA_API_KEY" in str(closed.failure) and KEY not in str(closed.failure)


def test_close_1008_after_accept_is_an_auth_failure():
    async def policy(ws, server):
        await ws.close(1008, "invalid api key")

    with _Server(policy) as srv:
        conn, got = _connect(srv.url)
        closed = _next(got, Closed)
        assert closed.failure.close_code == 1008
        assert classify(closed.failure) is Verdict.AUTH


@pytest.mark.parametrize("code", [1001, 1011])
def test_going_away_and_server_errors_are_retried(code):
    async def going(ws, server):
        await ws.send(json.dumps({"type": "session.created", "event_id": "e", "session": {}}))
        await ws.close(code, "bye")

    with _Server(going) as srv:
        conn, got = _connect(srv.url)
        _next(got, "session.created")
        closed = _next(got, Closed)
        assert closed.failure.close_code == code and classify(closed.failure) is Verdict.RETRY


def test_bad_frames_are_reported_and_the_connection_goes_on():
    """Malformed JSON, binary frames and bad base64 are BadFrame events; later events still arrive."""
    async def hostile(ws, server):
        await ws.send("{not json")
        await ws.send(b"\x00\x01binary")
        await ws.send(json.dumps({"type": "response.audio.delta", "item_id": "i", "delta": "%%%"}))
        await ws.send(json.dumps({"type": "session.created", "event_id": "e", "session": {}}))
        await asyncio.sleep(1)

    with _Server(hostile) as srv:
        conn, got = _connect(srv.url)
        bad = [_next(got, BadFrame) for _ in range(3)]
        assert "JSON" in str(bad[0].error) and "binary" in str(bad[1].error) and "base64" in str(bad[2].error)
        assert _next(got, "session.created")
        conn.close()


def test_refused_connection_is_a_network_fault():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    conn, got = _connect(f"ws://127.0.0.1:{port}/")
    closed = _next(got, Closed)
    assert "refused" in str(closed.failure) and classify(closed.failure) is Verdict.RETRY


def _silent_server():
    """Completes the WebSocket handshake, then never sends or reads again (a black hole)."""
    lsock = socket.socket()
    lsock.bind(("127.0.0.1", 0))
    lsock.listen(1)
    held = []

    def run():
        c, _ = lsock.accept()
        held.append(c)
        request = b""
        while b"\r\n\r\n" not in request:
            request += c.recv(4096)
        key = [l.split(b":", 1)[1].strip() for l in request.split(b"\r\n")
               if l.lower().startswith(b"sec-websocket-key")][0]
        accept = base64.b64encode(hashlib.sha1(key + b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11").digest())
        c.sendall(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                  b"Sec-WebSocket-Accept: " + accept + b"\r\nSec-WebSocket-Protocol: mira-realtime.v1\r\n\r\n")

    threading.Thread(target=run, daemon=True).start()
    return lsock, held


def test_silent_socket_is_declared_dead_by_the_ping_timeout():
    """No pong within ping_timeout_s after a ping: Closed with a retryable failure, in bounded time."""
    lsock, held = _silent_server()
    t0 = time.monotonic()
    conn, got = _connect(f"ws://127.0.0.1:{lsock.getsockname()[1]}/", ping_interval_s=0.3, ping_timeout_s=0.2)
    closed = _next(got, Closed, timeout=5)
    elapsed = time.monotonic() - t0
    assert "stopped answering pings" in str(closed.failure)
    assert classify(closed.failure) is Verdict.RETRY
    assert elapsed < 3.0
    lsock.close()
    for c in held:
        c.close()


def test_ws_to_a_remote_host_is_refused_before_connecting():
    with pytest.raises(Exception, match="unencrypted"):
        RealtimeConnection(ServerSettings.model_construct(url="ws://192.0.2.1/x"), KEY, lambda e: None)
