"""The protocol core: client events valid against the openai models, server frames parsed safely."""

import base64
import json

import pytest

from agent.errors import ProtocolError
from agent.realtime import events as ev
from agent.realtime.settings import SessionSettings, TurnDetectionSettings
from conformance import check_client_event


def test_session_update_carries_every_setting_and_validates():
    """session.update has voice, instructions, formats, transcription, VAD and tools."""
    tools = [{"type": "function", "name": "get_time", "description": "time",
              "parameters": {"type": "object", "properties": {}}}]
    e = ev.session_update(SessionSettings(transcription_language="en"), tools)
    check_client_event(e)
    s = e["session"]
    assert s["voice"] == "aria" and s["input_audio_format"] == "pcm16"
    assert s["turn_detection"]["type"] == "server_vad" and s["turn_detection"]["silence_duration_ms"] == 500
    assert s["input_audio_transcription"] == {"model": "whisper-1", "language": "en"}
    assert s["tools"] == tools


def test_manual_turns_switch_server_vad_off():
    """Push-to-talk turns send turn_detection null; no transcription model sends null too."""
    s = SessionSettings(turn_detection=TurnDetectionSettings(mode="manual"), transcription_model="")
    e = ev.session_update(s)
    check_client_event(e)
    assert e["session"]["turn_detection"] is None
    assert e["session"]["input_audio_transcription"] is None
    assert ev.session_update(SessionSettings(), manual_turns=True)["session"]["turn_detection"] is None
    check_client_event(ev.turn_detection_update(SessionSettings(), manual=True))


@pytest.mark.parametrize("event", [
    ev.append(b"\x01\x02" * 480), ev.commit(), ev.clear(), ev.response_create(), ev.response_cancel(),
    ev.truncate("item_1", 1234), ev.function_call_output("call_1", '{"ok": true}'),
    ev.text_message("user", "what time is it"), ev.text_message("assistant", "ten past four"),
])
def test_client_events_validate(event):
    """Every client event the device sends is a valid beta realtime event."""
    check_client_event(event)


def test_append_is_base64_of_the_frame():
    frame = bytes(range(256)) * 4
    assert base64.b64decode(ev.append(frame)["audio"]) == frame


def test_audio_delta_decodes_base64():
    e = ev.parse(json.dumps({"type": "response.audio.delta", "event_id": "e", "response_id": "r",
                             "item_id": "i", "output_index": 0, "content_index": 0,
                             "delta": base64.b64encode(b"\x00\x01\x02\x03").decode()}))
    assert isinstance(e, ev.AudioDelta)
    assert (e.item_id, e.response_id, e.audio) == ("i", "r", b"\x00\x01\x02\x03")


def test_unknown_event_types_are_tolerated():
    """An event type the device does not know parses to a plain event."""
    e = ev.parse('{"type": "response.brand_new_thing", "x": 1}')
    assert e.type == "response.brand_new_thing" and e.get("x") == 1


@pytest.mark.parametrize("frame,message", [
    ("not json", "not valid JSON"),
    ("[1, 2]", "JSON list"),
    ('{"no": "type"}', "no 'type'"),
    ('{"type": "response.audio.delta", "item_id": "i", "delta": "@@@"}', "not valid base64"),
    ('{"type": "response.audio.delta", "item_id": 5, "delta": ""}', "'item_id' must be a string"),
    ('{"type": "response.done", "response": "done"}', "'response' must be an object"),
    ('{"type": "error", "error": null}', "'error' must be an object"),
    ('{"type": "session.created"}', "'session' must be an object"),
    (b"\x00\x01", "binary frame"),
    ("[" * 100000, "not valid JSON"),
])
def test_malformed_frames_raise_protocol_error_naming_the_problem(frame, message):
    with pytest.raises(ProtocolError, match=message):
        ev.parse(frame)


def test_response_done_fields():
    e = ev.parse(json.dumps({"type": "response.done", "response": {
        "id": "r1", "status": "cancelled", "output": [{"type": "message"}], "usage": {"total_tokens": 9}}}))
    assert (e.response_id, e.status, len(e.output), e.usage["total_tokens"]) == ("r1", "cancelled", 1, 9)


def test_function_call_and_error():
    f = ev.parse('{"type": "response.function_call_arguments.done", "call_id": "c", "arguments": "{}"}')
    assert (f.call_id, f.name, f.arguments) == ("c", "", "{}")
    e = ev.parse('{"type": "error", "error": {"type": "invalid_request_error", "code": "x", "message": "m"}}')
    assert (e.code, e.message, e.error_type) == ("x", "m", "invalid_request_error")
