"""The devserver over real sockets on 127.0.0.1, driven with espeak-ng speech; every event linted."""

import base64
import functools
import json
import logging
import subprocess
import tempfile
from pathlib import Path

import numpy as np
import pytest
import soxr
import websocket

from agent.audio import g711
from agent.devserver import DevServer, Script
from agent.devserver.probe import Probe
from conformance import check_client_event, check_server_event

RATE = 24000
BYTES_PER_MS = RATE * 2 // 1000


@functools.lru_cache(maxsize=None)
def speech(text: str, rate: int = RATE) -> bytes:
    """espeak-ng saying `text`, as raw int16 mono at `rate` (sox without dither: same every run)."""
    with tempfile.TemporaryDirectory() as d:
        wav, raw = Path(d) / "s.wav", Path(d) / "s.raw"
        subprocess.run(["espeak-ng", "-v", "en-us", "-s", "150", "-w", str(wav), text], check=True)
        subprocess.run(["sox", str(wav), "-D", "-r", str(rate), "-c", "1", "-b", "16",
                        "-e", "signed-integer", "-t", "raw", str(raw)], check=True)
        return raw.read_bytes()


def turn_audio(text: str, lead_ms: int = 500, tail_ms: int = 1000) -> bytes:
    """Silence, the phrase, silence: one user turn as the microphone sends it (pcm16 24 kHz)."""
    return bytes(lead_ms * BYTES_PER_MS) + speech(text) + bytes(tail_ms * BYTES_PER_MS)


def espeak_reply(text: str) -> np.ndarray:
    """What the server should say: espeak-ng at its settings, resampled to 24 kHz by soxr."""
    out = subprocess.run(["espeak-ng", "-v", "en-us", "-s", "175", "--stdout", "--", text],
                         check=True, capture_output=True).stdout
    pos = out.index(b"data") + 8
    pcm = np.frombuffer(out[pos: pos + (len(out) - pos) // 2 * 2], dtype="<i2")
    return soxr.resample(pcm, 22050, RATE)


def audio_of(events: list[dict]) -> bytes:
    return b"".join(base64.b64decode(e["delta"]) for e in events if e["type"] == "response.audio.delta")


def types(events: list[dict]) -> list[str]:
    return [e["type"] for e in events]


@pytest.fixture(scope="module")
def server():
    with DevServer() as s:
        yield s


@pytest.fixture
def connect(server):
    """Open probes on the shared server; at the end, every event each session carried is linted."""
    opened: list[Probe] = []

    def open_probe(srv: DevServer = server, **kw) -> Probe:
        before = len(srv.sessions)
        p = Probe(srv.url, check_sent=check_client_event, check_received=check_server_event, **kw)
        opened.append((p, srv, before))
        p.expect("session.created")
        return p

    yield open_probe
    for p, srv, before in opened:
        p.close()
        for record in srv.sessions[before:before + 1]:
            for event in record.server_events:
                check_server_event(event)


def configure(p: Probe, **session) -> dict:
    p.send({"type": "session.update", "session": session})
    return p.expect("session.updated")["session"]


def test_handshake_answers_with_the_mira_subprotocol_and_session_created(server):
    """The upgrade picks mira-realtime.v1; the first event is session.created with the effective config."""
    with Probe(server.url, check_received=check_server_event) as p:
        first = p.recv()
        assert p.subprotocol == "mira-realtime.v1"
    assert first["type"] == "session.created"
    assert first["event_id"].startswith("event_")
    assert first["session"]["input_audio_format"] == "pcm16"
    assert first["session"]["turn_detection"]["type"] == "server_vad"


def test_wrong_or_missing_key_is_refused_with_401_and_never_logged(caplog):
    """With a configured key, a wrong or missing key fails the upgrade (401); no log line holds a key."""
    caplog.set_level(logging.DEBUG)
    with DevServer(api_key="right-key-123") as srv:
        for kw in ({"key": "wrong-key-456"}, {"key": None}):
            with pytest.raises(websocket.WebSocketBadStatusException) as e:
                Probe(srv.url, **kw)
            assert e.value.status_code == 401
        with pytest.raises(websocket.WebSocketBadStatusException) as e:
            Probe(srv.url, subprotocols=["openai-insecure-api-key.right-key-123"])
        assert e.value.status_code == 400
        with Probe(srv.url, key="right-key-123") as p:
            assert p.recv()["type"] == "session.created"
        assert [h.status for h in srv.recorder.handshakes] == [401, 401, 400, 101]
    assert "wrong-key-456" not in caplog.text and "right-key-123" not in caplog.text
    assert "openai-insecure-api-key.***" in caplog.text  # the header was logged, redacted


def test_session_update_merges_partial_updates_and_rejects_bad_ones_whole(connect):
    """Only sent fields change, nested turn_detection merges; a bad value is an error and changes nothing."""
    p = connect()
    s = configure(p, voice="ash")
    assert s["voice"] == "ash" and s["output_audio_format"] == "pcm16"
    s = configure(p, turn_detection={"silence_duration_ms": 800})
    assert s["voice"] == "ash"
    assert s["turn_detection"]["silence_duration_ms"] == 800 and s["turn_detection"]["threshold"] == 0.5
    p.send({"type": "session.update", "event_id": "evt_bad",
            "session": {"voice": "coral", "turn_detection": {"threshold": 2.0}}})
    err = p.expect("error")["error"]
    assert err["param"] == "session.turn_detection.threshold" and err["event_id"] == "evt_bad"
    s = configure(p, instructions="be brief")
    assert s["voice"] == "ash" and s["turn_detection"]["threshold"] == 0.5
    assert s["instructions"] == "be brief"


def test_vad_turn_on_speech_gives_started_stopped_committed_and_the_spoken_transcript(connect, server):
    """espeak speech then silence: speech_started/stopped at padded positions, partials, the exact audio."""
    p = connect()
    configure(p, input_audio_transcription={"model": "whisper-1"},
              turn_detection={"prefix_padding_ms": 300, "silence_duration_ms": 500})
    audio = turn_audio("what time is it")
    p.append(audio)
    events = p.collect_until("response.done", timeout=15)
    started = next(e for e in events if e["type"] == "input_audio_buffer.speech_started")
    stopped = next(e for e in events if e["type"] == "input_audio_buffer.speech_stopped")
    committed = next(e for e in events if e["type"] == "input_audio_buffer.committed")
    done = next(e for e in events if e["type"] == "conversation.item.input_audio_transcription.completed")
    partials = [e["delta"] for e in events if e["type"] == "conversation.item.input_audio_transcription.delta"]
    item = started["item_id"]
    assert stopped["item_id"] == committed["item_id"] == done["item_id"] == item
    # Speech begins at 500 ms (espeak adds a few ms of its own): the turn starts 300 ms earlier.
    assert 180 <= started["audio_start_ms"] <= 260
    speech_ms = len(speech("what time is it")) // BYTES_PER_MS
    assert 500 + speech_ms <= stopped["audio_end_ms"] <= 500 + speech_ms + 520
    assert done["transcript"] == "what time is it"
    assert len(partials) >= 2 and "".join(partials) == "what time is it"
    order = types(events)
    assert order.index("input_audio_buffer.speech_started") < order.index(
        "input_audio_buffer.speech_stopped") < order.index("input_audio_buffer.committed") < order.index(
        "response.created")
    record = server.recorder.wait_for(lambda: server.sessions[-1] if server.sessions[-1].turns else None)
    assert bytes(record.input_audio) == audio  # sample-exact: every byte the client sent
    turn = record.turns[0]
    assert turn.audio == audio[started["audio_start_ms"] * BYTES_PER_MS: stopped["audio_end_ms"] * BYTES_PER_MS]
    assert record.transcripts == ["what time is it"]


def test_reply_audio_is_espeak_speech_at_24_khz_with_its_transcript(connect, server):
    """The reply to a phrase is its scripted text, spoken by espeak-ng and resampled to 24 kHz, sample-exact."""
    p = connect()
    configure(p, turn_detection=None)
    p.append(turn_audio("what time is it"))
    p.send({"type": "input_audio_buffer.commit"})
    p.expect("input_audio_buffer.committed")
    p.send({"type": "response.create"})
    events = p.collect_until("response.done", timeout=15)
    reply = server.script.match("what time is it").reply
    pcm = np.frombuffer(audio_of(events), dtype="<i2")
    expected = espeak_reply(reply)
    assert len(pcm) == len(expected) and np.array_equal(pcm, expected)
    assert 20 * np.log10(np.sqrt(np.mean(pcm.astype(float) ** 2)) / 32768) > -30  # speech, not silence
    assert "".join(e["delta"] for e in events if e["type"] == "response.audio_transcript.delta") == reply
    assert next(e for e in events if e["type"] == "response.audio_transcript.done")["transcript"] == reply
    done = events[-1]["response"]
    assert done["status"] == "completed" and done["usage"]["total_tokens"] > 0
    order = [t for t in types(events) if t.startswith("response.")]
    assert order[:3] == ["response.created", "response.output_item.added", "response.content_part.added"]
    assert types(events)[-5:] == ["response.audio.done", "response.audio_transcript.done",
                                  "response.content_part.done", "response.output_item.done", "response.done"]
    deltas = [e for e in events if e["type"] == "response.audio.delta"]
    assert all(len(base64.b64decode(e["delta"])) <= 4800 for e in deltas)  # 100 ms chunks


def test_manual_turn_commits_only_on_commit_and_refuses_under_100_ms(connect, server):
    """With turn_detection null nothing happens until commit; a commit of < 100 ms is an error."""
    p = connect()
    configure(p, turn_detection=None, input_audio_transcription={"model": "whisper-1"})
    p.append(bytes(50 * BYTES_PER_MS))
    p.send({"type": "input_audio_buffer.commit", "event_id": "evt_short"})
    err = p.expect("error")["error"]
    assert err["code"] == "input_audio_buffer_commit_empty" and err["event_id"] == "evt_short"
    p.send({"type": "input_audio_buffer.clear"})
    p.expect("input_audio_buffer.cleared")
    audio = turn_audio("tell me a story")
    p.append(audio)
    p.send({"type": "input_audio_buffer.commit"})
    events = p.collect_until("conversation.item.input_audio_transcription.completed")
    assert "input_audio_buffer.speech_started" not in types(events)
    assert events[-1]["transcript"] == "tell me a story"
    with pytest.raises(TimeoutError):
        p.expect("response.created", timeout=0.5)  # manual turns wait for response.create
    record = server.sessions[-1]
    assert record.turns[-1].audio == audio  # the whole buffer after the clear, exactly
    assert bytes(record.input_audio) == bytes(50 * BYTES_PER_MS) + audio


def test_g711_in_and_out(connect, server):
    """mu-law input is heard (VAD, transcript); A-law output is the same speech encoded at 8 kHz."""
    p = connect()
    configure(p, input_audio_format="g711_ulaw", output_audio_format="g711_alaw",
              input_audio_transcription={"model": "whisper-1"})
    pcm8k = bytes(500 * 16) + speech("hello", 8000) + bytes(1000 * 16)
    ulaw = g711.ulaw_encode(np.frombuffer(pcm8k, dtype="<i2"))
    p.append(ulaw, frame_bytes=160)
    events = p.collect_until("response.done", timeout=15)
    assert next(e for e in events if e["type"].endswith("transcription.completed"))["transcript"] == "hello"
    alaw = audio_of(events)
    expected = soxr.resample(espeak_reply(server.script.match("hello").reply), RATE, 8000)
    assert len(alaw) == len(expected)
    decoded = g711.alaw_decode(alaw).astype(float)
    assert np.max(np.abs(decoded - expected)) <= np.max(np.abs(expected)) * 0.07 + 16  # G.711 error only
    record = server.sessions[-1]
    assert bytes(record.input_audio) == ulaw and record.input_format == "g711_ulaw"
    stopped = next(e for e in events if e["type"] == "input_audio_buffer.speech_stopped")
    started = next(e for e in events if e["type"] == "input_audio_buffer.speech_started")
    assert record.turns[0].audio == ulaw[started["audio_start_ms"] * 8: stopped["audio_end_ms"] * 8]


def say(p: Probe, text: str) -> None:
    """A typed user message, for tests about responses rather than recognition."""
    p.send({"type": "conversation.item.create",
            "item": {"type": "message", "role": "user", "content": [{"type": "input_text", "text": text}]}})
    p.expect("conversation.item.created")


def test_append_during_reply_audio_cancels_the_response(connect, server):
    """Mira's barge-in: an append while reply audio streams ends it with response.done cancelled."""
    p = connect()
    configure(p, turn_detection=None)
    say(p, "tell me a story")
    p.send({"type": "response.create"})
    first = p.expect("response.audio.delta")
    p.append(bytes(20 * BYTES_PER_MS))
    events = p.collect_until("response.done")
    done = events[-1]["response"]
    assert done["status"] == "cancelled"
    assert done["status_details"] == {"type": "cancelled", "reason": "turn_detected"}
    assert done["output"][0]["status"] == "incomplete"
    heard = audio_of([first] + events)
    full = len(espeak_reply(server.script.match("tell me a story").reply)) * 2
    assert 0 < len(heard) < full / 2  # 11 s story: cut after a few chunks
    reply = server.sessions[-1].replies[-1]
    assert reply.status == "incomplete" and bytes(reply.audio) == heard
    assert "response.audio.done" not in types(events)


def test_truncate_acks_within_the_audio_and_errors_beyond_it(connect, server):
    """conversation.item.truncate: within the item's audio it is acked; past its end or unknown, an error."""
    p = connect()
    configure(p, turn_detection=None)
    say(p, "hello")
    p.send({"type": "response.create"})
    events = p.collect_until("response.done")
    item_id = events[-1]["response"]["output"][0]["id"]
    sent_ms = len(audio_of(events)) // BYTES_PER_MS
    p.send({"type": "conversation.item.truncate", "item_id": item_id, "content_index": 0,
            "audio_end_ms": sent_ms + 1, "event_id": "evt_trunc"})
    err = p.expect("error")["error"]
    assert err["param"] == "audio_end_ms" and err["event_id"] == "evt_trunc"
    p.send({"type": "conversation.item.truncate", "item_id": "item_nope", "content_index": 0,
            "audio_end_ms": 10})
    assert p.expect("error")["error"]["code"] == "item_not_found"
    p.send({"type": "conversation.item.truncate", "item_id": item_id, "content_index": 0,
            "audio_end_ms": sent_ms})
    ack = p.expect("conversation.item.truncated")
    assert ack["item_id"] == item_id and ack["audio_end_ms"] == sent_ms
    assert server.sessions[-1].replies[-1].truncated_ms == sent_ms


def test_one_response_at_a_time_and_cancel_by_request(connect):
    """response.create during a response is refused; response.cancel ends it (client_cancelled)."""
    p = connect()
    configure(p, turn_detection=None)
    say(p, "tell me a story")
    p.send({"type": "response.create"})
    p.expect("response.audio.delta")
    p.send({"type": "response.create", "event_id": "evt_second"})
    err = p.expect("error")["error"]
    assert err["code"] == "conversation_already_has_active_response" and err["event_id"] == "evt_second"
    p.send({"type": "response.cancel"})
    done = p.expect("response.done")["response"]
    assert done["status"] == "cancelled" and done["status_details"]["reason"] == "client_cancelled"
    p.send({"type": "response.cancel"})
    assert p.expect("error")["error"]["code"] == "response_cancel_not_active"


def test_function_call_round_trip(connect, server):
    """A scripted phrase yields a function_call; its output plus response.create gets a spoken reply."""
    p = connect()
    configure(p, turn_detection=None, tools=[{"type": "function", "name": "set_light",
                                               "description": "Switch the light.",
                                               "parameters": {"type": "object"}}])
    say(p, "turn on the light")
    p.send({"type": "response.create"})
    events = p.collect_until("response.done")
    added = next(e for e in events if e["type"] == "response.output_item.added")["item"]
    assert added["type"] == "function_call" and added["name"] == "set_light"
    call_id = added["call_id"]
    args = "".join(e["delta"] for e in events if e["type"] == "response.function_call_arguments.delta")
    done_args = next(e for e in events if e["type"] == "response.function_call_arguments.done")
    assert args == done_args["arguments"] and json.loads(args) == {"on": True}
    assert done_args["call_id"] == call_id
    assert events[-1]["response"]["status"] == "completed"
    assert "response.audio.delta" not in types(events)
    p.send({"type": "conversation.item.create",
            "item": {"type": "function_call_output", "call_id": "call_unknown", "output": "x"}})
    assert p.expect("error")["error"]["param"] == "item.call_id"
    p.send({"type": "conversation.item.create",
            "item": {"type": "function_call_output", "call_id": call_id, "output": "the light is on"}})
    p.expect("conversation.item.created")
    p.send({"type": "response.create"})
    events = p.collect_until("response.done")
    assert next(e for e in events if e["type"] == "response.audio_transcript.done")["transcript"] == \
        "Done: the light is on"
    assert len(audio_of(events)) > 0
    assert server.sessions[-1].function_outputs[-1]["output"] == "the light is on"


@pytest.mark.parametrize("frame, code", [
    ("{not json", "invalid_json"),
    ("[1, 2]", "invalid_event"),
    (json.dumps({"type": "no.such.event"}), "invalid_event"),
    (json.dumps({"audio": "AAAA"}), "invalid_event"),
    (json.dumps({"type": "input_audio_buffer.append", "audio": 12}), "invalid_type"),
    (json.dumps({"type": "input_audio_buffer.append", "audio": "%%%not base64"}), "invalid_value"),
    (json.dumps({"type": "input_audio_buffer.append"}), "missing_required_parameter"),
    (json.dumps({"type": "conversation.item.truncate", "item_id": "x", "content_index": 0,
                 "audio_end_ms": "10"}), "invalid_type"),
    (json.dumps({"type": "session.update", "session": {"voice": 3}}), "invalid_type"),
    (json.dumps({"type": "session.update", "session": {"colour": "red"}}), "unknown_parameter"),
    (json.dumps({"type": "output_audio_buffer.clear"}), "unsupported_event"),
    (b"\x00\x01binary", "invalid_event"),
])
def test_bad_client_frames_get_an_error_and_the_socket_stays_up(connect, frame, code):
    """Malformed JSON, unknown types, wrong field types: an invalid_request_error, then business as usual."""
    p = connect()
    p.send(frame)
    err = p.expect("error")["error"]
    assert err["type"] == "invalid_request_error" and err["code"] == code and err["message"]
    assert configure(p, voice="sage")["voice"] == "sage"


def test_script_can_be_replaced_while_running(connect, server):
    """A new script takes effect on the next response; typed text that matches nothing gets the fallback."""
    old = server.script
    server.script = Script.from_dict({"fallback": "No idea.",
                                      "phrases": [{"say": "ping", "reply": "Pong."}]})
    try:
        p = connect()
        configure(p, turn_detection=None)
        say(p, "ping")
        p.send({"type": "response.create"})
        assert p.expect("response.audio_transcript.done")["transcript"] == "Pong."
        p.expect("response.done")
        say(p, "what is the weather")
        p.send({"type": "response.create"})
        assert p.expect("response.audio_transcript.done")["transcript"] == "No idea."
    finally:
        server.script = old


def test_text_only_response_and_item_retrieve_delete(connect):
    """response.create with modalities [text] streams text events; items can be retrieved and deleted."""
    p = connect()
    configure(p, turn_detection=None)
    p.send({"type": "conversation.item.create", "item": {
        "id": "item_mine", "type": "message", "role": "user", "content": [{"type": "input_text", "text": "hello"}]}})
    assert p.expect("conversation.item.created")["item"]["id"] == "item_mine"
    p.send({"type": "response.create", "response": {"modalities": ["text"]}})
    events = p.collect_until("response.done")
    assert "response.audio.delta" not in types(events)
    text = "".join(e["delta"] for e in events if e["type"] == "response.text.delta")
    assert text == next(e for e in events if e["type"] == "response.text.done")["text"]
    assert text.startswith("Hello!")
    p.send({"type": "conversation.item.retrieve", "item_id": "item_mine"})
    assert p.expect("conversation.item.retrieved")["item"]["content"][0]["text"] == "hello"
    p.send({"type": "conversation.item.delete", "item_id": "item_mine"})
    assert p.expect("conversation.item.deleted")["item_id"] == "item_mine"
    p.send({"type": "conversation.item.retrieve", "item_id": "item_mine"})
    assert p.expect("error")["error"]["code"] == "item_not_found"


def test_several_calls_in_one_response_each_get_their_output(connect, server):
    """A phrase with two calls yields two function_call items in order; both outputs are spoken about."""
    old = server.script
    server.script = Script.from_dict({"phrases": [{"say": "good night", "calls": [
        {"name": "set_light", "arguments": {"on": False}}, {"name": "set_timer", "arguments": {"minutes": 5}}]}]})
    try:
        p = connect()
        configure(p, turn_detection=None)
        say(p, "good night")
        p.send({"type": "response.create"})
        events = p.collect_until("response.done")
        items = [e["item"] for e in events if e["type"] == "response.output_item.done"]
        assert [i["name"] for i in items] == ["set_light", "set_timer"]
        assert [e["output_index"] for e in events if e["type"] == "response.output_item.added"] == [0, 1]
        for item, output in zip(items, ["off", "timer set"]):
            p.send({"type": "conversation.item.create",
                    "item": {"type": "function_call_output", "call_id": item["call_id"], "output": output}})
            p.expect("conversation.item.created")
        p.send({"type": "response.create"})
        assert p.expect("response.audio_transcript.done")["transcript"] == "Done: off Done: timer set"
    finally:
        server.script = old


def test_switching_turn_detection_mid_buffer_then_commit(connect, server):
    """Audio sent under manual turns, then VAD switched on: a commit still takes the whole buffer."""
    p = connect()
    configure(p, turn_detection=None)
    audio = turn_audio("hello", tail_ms=200)
    p.append(audio)
    configure(p, turn_detection={"silence_duration_ms": 2000})
    p.send({"type": "input_audio_buffer.commit"})
    assert p.expect("input_audio_buffer.committed")["item_id"]
    assert server.sessions[-1].turns[-1].audio == audio
