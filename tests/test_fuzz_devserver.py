"""Fuzz the devserver with hostile client events from a raw websocket client, mid-conversation."""

import base64
import json
import logging
import random
import socket
import threading

import pytest
import websocket

from agent.demo import speak
from agent.devserver import DevServer
from agent.devserver.server import KEY_PREFIX, SUBPROTOCOL
from conformance import check_server_event

KEY = "sk-mira-fuzz"
KINDS = ["session.update", "input_audio_buffer.append", "input_audio_buffer.commit", "input_audio_buffer.clear",
         "response.create", "response.cancel", "conversation.item.create", "conversation.item.truncate",
         "conversation.item.delete", "conversation.item.retrieve", "transcription_session.update", "x" * 300]


def _junk(rng: random.Random, depth: int = 0):
    pick = rng.randrange(8 if depth < 3 else 5)
    if pick < 4:
        return [None, rng.random() < 0.5, rng.randint(-2**63, 2**63), rng.random() * 1e300][pick]
    if pick == 4:
        return rng.choice(["", "x" * rng.randrange(400), "\u202e\x00", "pcm16", "g711_ulaw", "server_vad"])
    if pick == 5:
        return [_junk(rng, depth + 1) for _ in range(rng.randrange(4))]
    if pick == 6:
        return {rng.choice(["type", "role", "content", "call_id", "output", "input_audio_format",
                            "turn_detection", "tools", "voice", "text", "k"]): _junk(rng, depth + 1)
                for _ in range(rng.randrange(5))}
    return base64.b64encode(rng.randbytes(rng.randrange(1, 500))).decode()


def hostile_client_event(rng: random.Random) -> str | bytes:
    """One hostile client frame: junk, wrong types, truncation, odd or bad audio, events out of order."""
    roll = rng.random()
    if roll < 0.08:
        return rng.randbytes(rng.randrange(1, 300))                        # binary frame
    if roll < 0.18:
        text = json.dumps({"type": rng.choice(KINDS), "x": _junk(rng)})
        return text[: rng.randrange(1, len(text))]                          # truncated
    if roll < 0.28:
        audio = rng.choice(["@@@@", "abc", "=" * 4, base64.b64encode(rng.randbytes(rng.choice([1, 3, 479]))).decode()])
        return json.dumps({"type": "input_audio_buffer.append", "audio": audio})   # bad or odd audio
    if roll < 0.40:
        return json.dumps(rng.choice([                                      # valid shape, wrong moment
            {"type": "response.cancel", "response_id": f"resp_{rng.randrange(9)}"},
            {"type": "input_audio_buffer.commit"},
            {"type": "conversation.item.truncate", "item_id": "item_x", "content_index": 0, "audio_end_ms": 10**9},
            {"type": "conversation.item.create", "item": {"type": "function_call_output", "call_id": "nope",
                                                          "output": "x"}},
            {"type": "conversation.item.create", "previous_item_id": "nope",
             "item": {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "hi"}]}},
            {"type": "session.update", "session": {"input_audio_format": rng.choice(["g711_ulaw", "pcm16"])}},
            {"type": "session.update", "session": {"turn_detection": rng.choice([None, {"type": "server_vad"}])}},
            {"type": "conversation.item.delete", "item_id": "item_nope"},
        ]))
    event = {"type": rng.choice(KINDS)}
    for key in rng.sample(["session", "audio", "item", "item_id", "content_index", "audio_end_ms", "response",
                           "response_id", "event_id", "previous_item_id"], rng.randrange(1, 5)):
        event[key] = _junk(rng)
    return json.dumps(event)


def connect(server: DevServer) -> websocket.WebSocket:
    ws = websocket.create_connection(server.url, subprotocols=[SUBPROTOCOL, KEY_PREFIX + KEY], timeout=10)
    assert json.loads(ws.recv())["type"] == "session.created"
    return ws


def drain(ws: websocket.WebSocket, until: str | None = None, timeout: float = 15.0) -> list[dict]:
    """Read events until one of type `until` (or until the socket is quiet for 0.3 s)."""
    events = []
    ws.settimeout(timeout if until else 0.3)
    try:
        while True:
            opcode, data = ws.recv_data(control_frame=False)
            assert opcode == websocket.ABNF.OPCODE_TEXT, (opcode, data[:80])
            event = json.loads(data)
            check_server_event(event)
            events.append(event)
            if event["type"] == until:
                return events
    except websocket.WebSocketTimeoutException:
        if until:
            raise AssertionError(f"no {until}; last events: {[e['type'] for e in events[-10:]]}") from None
        return events


def speak_turn(ws: websocket.WebSocket, pcm) -> None:
    ws.send(json.dumps({"type": "session.update", "session": {"turn_detection": None}}))
    for i in range(0, len(pcm), 4800):
        ws.send(json.dumps({"type": "input_audio_buffer.append",
                            "audio": base64.b64encode(pcm[i:i + 4800].astype("<i2").tobytes()).decode()}))
    ws.send(json.dumps({"type": "input_audio_buffer.commit"}))
    ws.send(json.dumps({"type": "response.create"}))


@pytest.mark.slow
def test_hostile_client_events_mid_conversation_never_take_the_devserver_down(caplog):
    """500 seeded hostile events interleaved with a spoken turn and its streaming reply: every answer
    is a valid event, no handler fails, and the next session holds a whole turn."""
    caplog.set_level(logging.WARNING, logger="agent.devserver")
    rng = random.Random(5)
    hello = speak("Hello.")
    with DevServer(api_key=KEY, speed=4.0) as server:
        ws = connect(server)
        speak_turn(ws, hello)
        for n in range(500):
            frame = hostile_client_event(rng)
            if n % 50 == 0:
                speak_turn(ws, hello)
            elif isinstance(frame, bytes):
                ws.send_binary(frame)
            else:
                ws.send(frame)
        drain(ws)
        ws.send(json.dumps({"type": "session.update", "session": {"input_audio_format": "pcm16",
                                                                  "voice": "verse"}}))
        # Under load the server may still be answering the hostile events (some are valid
        # session.updates): read on until the answer to this one.
        for _ in range(50):
            updated = drain(ws, "session.updated")[-1]
            if updated["session"]["voice"] == "verse":
                break
        assert updated["session"]["voice"] == "verse"
        ws.close()
        assert server._thread.is_alive()
        errors = sum(e.get("type") == "error" for e in server.sessions[0].server_events)
        assert errors >= 300
        ws = connect(server)
        speak_turn(ws, hello)
        done = drain(ws, "response.done")
        ws.close()
    assert done[-1]["response"]["status"] == "completed"
    assert server.sessions[-1].transcripts == ["hello"]
    failures = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert not failures, [r.getMessage() for r in failures]


def _raw_session(server: DevServer) -> socket.socket:
    """A TCP socket that has done the upgrade by hand and read session.created's frame header."""
    ws = websocket.WebSocket()
    ws.connect(server.url, subprotocols=[SUBPROTOCOL, KEY_PREFIX + KEY], timeout=5)
    ws.recv()
    return ws


@pytest.mark.parametrize("frame, codes", [
    (b"\x81\x05hello", {1002}),                                   # unmasked client frame
    (b"\x81\x82\x00\x00\x00\x00\xff\xfe", {1007}),                # text that is not UTF-8
    (b"\x89\xfe\x00\x80\x00\x00\x00\x00" + b"x" * 128, {1002}),   # a control frame over 125 bytes
    (b"\x82\xff" + (2**62).to_bytes(8, "big") + b"\x00\x00\x00\x00", {1009}),  # a 4 EiB message
    (b"\x80\x80\x00\x00\x00\x00", {1002}),                        # continuation with nothing to continue
    (b"\x8f\x80\x00\x00\x00\x00", {1002}),                        # a reserved opcode
])
def test_broken_websocket_frames_close_that_connection_only(frame, codes):
    """Frames that break the WebSocket protocol close that connection with the right code; the
    server keeps serving others."""
    with DevServer(api_key=KEY) as server:
        other = connect(server)
        ws = _raw_session(server)
        ws.sock.sendall(frame)
        ws.settimeout(5)
        code = None
        try:
            while code is None:
                opcode, f = ws.recv_data_frame(True)
                if opcode == websocket.ABNF.OPCODE_CLOSE:
                    code = int.from_bytes(f.data[:2], "big")
        except (websocket.WebSocketConnectionClosedException, ConnectionError):
            pass
        ws.shutdown()
        assert code in codes
        other.send(json.dumps({"type": "session.update", "session": {"voice": "verse"}}))
        assert drain(other, "session.updated")
        other.close()
        assert threading.active_count() < 50
