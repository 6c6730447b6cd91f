"""The devserver's fault knobs (issue 7) and hostile client input, over real sockets on 127.0.0.1."""

import base64
import json
import random
import socket
import time

import pytest
import websocket

from agent.devserver import DevServer
from agent.devserver.probe import Probe
from conformance import check_client_event, check_server_event


@pytest.fixture
def server():
    with DevServer() as s:
        yield s
    for record in s.sessions:
        for event in record.server_events:
            check_server_event(event)


def probe(server: DevServer, **kw) -> Probe:
    return Probe(server.url, check_sent=check_client_event, check_received=check_server_event, **kw)


def start_story(p: Probe) -> None:
    """A long spoken reply (about 11 s of audio), asked for by typed text."""
    p.expect("session.created")
    p.send({"type": "session.update", "session": {"turn_detection": None}})
    p.send({"type": "conversation.item.create",
            "item": {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "tell me a story"}]}})
    p.send({"type": "response.create"})


def close_frame(p: Probe, timeout: float = 5.0) -> tuple[int, list[dict]]:
    """Read until the server's close frame: (its code, the events before it)."""
    p.ws.settimeout(timeout)
    events = []
    while True:
        opcode, frame = p.ws.recv_data_frame(True)
        if opcode == websocket.ABNF.OPCODE_CLOSE:
            return int.from_bytes(frame.data[:2], "big"), events
        if opcode == websocket.ABNF.OPCODE_TEXT:
            events.append(json.loads(frame.data))
            check_server_event(events[-1])


def test_abort_mid_response_resets_tcp_after_n_deltas_once(server):
    """mid_response=abort: after 2 audio deltas the TCP connection dies with no close frame; it fires once."""
    server.faults.mid_response, server.faults.after_deltas = "abort", 2
    with probe(server) as p:
        start_story(p)
        deltas = 0
        with pytest.raises((websocket.WebSocketConnectionClosedException, ConnectionError)):
            while True:
                event = p.recv()
                deltas += event["type"] == "response.audio.delta"
        assert deltas == 2
        assert "response.done" not in [e["type"] for e in p.received]
    assert server.faults.mid_response is None
    server.recorder.wait_for(lambda: server.sessions[-1].closed)
    assert server.sessions[-1].close_code in (None, 1006)
    with probe(server) as p:  # the next session is untouched
        start_story(p)
        p.send({"type": "response.cancel"}) if p.expect("response.audio.delta", timeout=10) else None
        assert p.expect("response.done")["response"]["status"] == "cancelled"


@pytest.mark.parametrize("fault, code", [("close_1001", 1001), ("close_1011", 1011)])
def test_close_mid_response_sends_that_close_code(server, fault, code):
    """mid_response=close_1001 / close_1011: a close frame with that code after the deltas."""
    server.faults.mid_response = fault
    with probe(server) as p:
        start_story(p)
        got, events = close_frame(p)
    assert got == code
    assert [e["type"] for e in events].count("response.audio.delta") == server.faults.after_deltas


def test_session_expired_is_an_error_then_close_1001(server):
    """mid_response=session_expired, expire_sessions() and max_session_s all end with the error, then 1001."""
    server.faults.mid_response = "session_expired"
    with probe(server) as p:
        start_story(p)
        code, events = close_frame(p)
    assert code == 1001 and events[-1]["error"]["code"] == "session_expired"
    with probe(server) as p:
        p.expect("session.created")
        assert server.expire_sessions() == 1
        code, events = close_frame(p)
    assert code == 1001 and events[-1]["error"]["code"] == "session_expired"
    server.faults.max_session_s = 0.3
    with probe(server) as p:
        t0 = time.monotonic()
        code, events = close_frame(p)
    assert code == 1001 and events[-1]["error"]["code"] == "session_expired"
    assert 0.25 < time.monotonic() - t0 < 3


def test_key_rejected_after_accept_closes_1008_before_session_created(server):
    """reject_key_after_accept: the upgrade succeeds (101), then a 1008 close and no session.created."""
    server.faults.reject_key_after_accept = True
    with probe(server) as p:
        code, events = close_frame(p)
    assert code == 1008 and events == []
    assert server.recorder.handshakes[-1].status == 101
    server.recorder.wait_for(lambda: server.sessions[-1].closed)
    assert server.sessions[-1].close_code == 1008


def test_refuse_status_fails_the_upgrade(server):
    """refuse_status=503: every upgrade gets that HTTP status."""
    server.faults.refuse_status = 503
    with pytest.raises(websocket.WebSocketBadStatusException) as e:
        probe(server)
    assert e.value.status_code == 503
    server.faults.refuse_status = None
    with probe(server) as p:
        assert p.recv()["type"] == "session.created"


def test_silent_server_answers_no_ping_and_no_event(server):
    """answer_pings=False: after session.created, pings get no pong and events no answer; stop() is prompt."""
    server.faults.answer_pings = False
    p = probe(server)
    p.expect("session.created")
    p.ws.ping(b"are-you-there")
    p.send({"type": "session.update", "session": {"voice": "ash"}})
    p.ws.settimeout(1.0)
    with pytest.raises(websocket.WebSocketTimeoutException):
        p.ws.recv_data_frame(True)
    server.faults.answer_pings = True
    with probe(server) as q:  # an open session silenced at run time
        q.expect("session.created")
        assert server.silence_connections(server.live_sessions()[-1]) == 1
        q.ws.ping(b"hello")
        q.ws.settimeout(1.0)
        with pytest.raises(websocket.WebSocketTimeoutException):
            q.ws.recv_data_frame(True)
        q.ws.shutdown()  # a closing handshake would wait for the silent server
    t0 = time.monotonic()
    server.stop()
    assert time.monotonic() - t0 < 3
    p.ws.shutdown()


def test_raw_frames_reach_the_client_unchanged(server):
    """send_raw sends any text or binary frame as it is; write_raw breaks the framing itself."""
    with probe(server) as p:
        p.expect("session.created")
        assert server.send_raw('{"type": "response.audio.delta", "delta": 5') == 1
        assert server.send_raw(b"\xff\x00binary") == 1
        p.ws.settimeout(5)
        assert p.ws.recv_data() == (websocket.ABNF.OPCODE_TEXT, b'{"type": "response.audio.delta", "delta": 5')
        assert p.ws.recv_data() == (websocket.ABNF.OPCODE_BINARY, b"\xff\x00binary")
        server.write_raw(b"\x83\x00")  # a frame with the reserved opcode 3
        with pytest.raises(websocket.WebSocketProtocolException):
            p.ws.recv_data()
        p.ws.shutdown()  # the stream is garbage now: no closing handshake is possible


def test_abort_connections_and_close_connections_act_on_open_sessions(server):
    """abort_connections resets the socket now; close_connections sends the chosen code."""
    with probe(server) as p:
        p.expect("session.created")
        assert server.abort_connections() == 1
        with pytest.raises((websocket.WebSocketConnectionClosedException, ConnectionError)):
            p.recv()
    with probe(server) as p:
        p.expect("session.created")
        assert server.close_connections(1011, "boom") == 1
        assert close_frame(p)[0] == 1011


def test_server_killed_and_back_on_the_same_port(server):
    """stop() then a new DevServer on the same port: refused while down, a fresh session when back."""
    port = server.port
    with probe(server) as p:
        p.expect("session.created")
        server.abort_connections()  # a killed process: no closing handshake
        server.stop()
        with pytest.raises((websocket.WebSocketConnectionClosedException, ConnectionError, TimeoutError)):
            p.expect("session.updated", timeout=2)
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=2)
    assert server.start() == port  # the same object, back on the same port, recording on
    with probe(server) as p:
        assert p.recv()["type"] == "session.created"
    assert len(server.sessions) == 2


KINDS = ["session.update", "input_audio_buffer.append", "input_audio_buffer.commit", "input_audio_buffer.clear",
         "response.create", "response.cancel", "conversation.item.create", "conversation.item.truncate",
         "conversation.item.delete", "conversation.item.retrieve", "bogus.type", ""]


def _junk(rng: random.Random, depth: int = 0):
    """A random JSON value: scalars, long strings, base64, nested lists and objects."""
    pick = rng.randrange(8 if depth < 2 else 5)
    if pick < 4:
        return [None, True, rng.randint(-2**40, 2**40), rng.random() * 1e6][pick]
    if pick == 4:
        return "x" * rng.randrange(300)
    if pick == 5:
        return [_junk(rng, depth + 1) for _ in range(rng.randrange(4))]
    if pick == 6:
        return {rng.choice(["type", "audio", "item", "session", "item_id", "k"]): _junk(rng, depth + 1)
                for _ in range(rng.randrange(4))}
    return base64.b64encode(rng.randbytes(rng.randrange(1, 2000))).decode()


def hostile(rng: random.Random) -> str | bytes:
    """One hostile client frame: junk JSON, wrong types, truncated text, binary, odd audio, huge strings."""
    roll = rng.random()
    if roll < 0.1:
        return rng.randbytes(rng.randrange(1, 64))
    if roll < 0.2:
        return json.dumps({"type": rng.choice(KINDS), "x": _junk(rng)})[: rng.randrange(1, 40)]
    if roll < 0.25:
        return json.dumps({"type": "input_audio_buffer.append", "audio": "A" * rng.randrange(1, 200_000)})
    if roll < 0.4:  # nearly valid items: the server echoes items back, so their fields must be checked
        part = {"type": rng.choice(["input_text", "text", "audio", "bogus", None]),
                rng.choice(["text", "transcript", "audio", "id"]): rng.choice(["hello", _junk(rng)])}
        item = {"type": rng.choice(["message", "function_call", "function_call_output", 7]),
                "role": rng.choice(["user", "assistant", "robot", None]),
                "content": rng.choice([[part], part, [part, _junk(rng)]]),
                rng.choice(["call_id", "output", "name", "arguments", "id"]): rng.choice(["call_1", _junk(rng)])}
        return json.dumps({"type": "conversation.item.create", "item": item})
    if roll < 0.5:
        key = rng.choice(["voice", "turn_detection", "tools", "input_audio_format", "modalities",
                          "input_audio_transcription", "temperature", "max_response_output_tokens"])
        return json.dumps({"type": "session.update", "session": {key: _junk(rng)}})
    event = {"type": rng.choice(KINDS)}
    for key in rng.sample(["session", "audio", "item", "item_id", "content_index", "audio_end_ms",
                           "response", "response_id", "event_id", "previous_item_id"], rng.randrange(4)):
        event[key] = _junk(rng)
    return json.dumps(event)


def test_hostile_client_frames_never_take_the_server_down(server):
    """300 seeded hostile frames: only error events (all valid), the socket stays up, the next session works."""
    rng = random.Random(7)
    with probe(server) as p:
        p.expect("session.created")
        for _ in range(300):
            p.send(hostile(rng))
        p.send({"type": "input_audio_buffer.clear"})
        p.send({"type": "session.update", "event_id": "evt_last", "session": {"voice": "verse"}})
        while not (p.recv(timeout=20)["type"] == "session.updated"
                   and p.received[-1]["session"]["voice"] == "verse"):
            pass
    assert sum(e["type"] == "error" for e in p.received) > 100
    assert not [e for e in p.received if e["type"] == "error" and e["error"]["type"] == "server_error"]
    server.recorder.wait_for(lambda: server.sessions[0].closed)
    assert server.sessions[0].close_code == 1000  # closed by the client at the end, not by the server
    with probe(server) as p:
        start_story(p)
        p.expect("response.audio.delta", timeout=10)
        p.send({"type": "response.cancel"})
        assert p.expect("response.done")["response"]["status"] == "cancelled"
