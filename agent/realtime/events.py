"""The Mira Realtime protocol as data: client events built, server events parsed. No I/O here."""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass, field
from typing import Any

from agent.errors import ProtocolError
from agent.realtime.settings import SessionSettings

# ---------------------------------------------------------------- client -> server


def session_update(s: SessionSettings, tools: list[dict] | None = None, *,
                   manual_turns: bool | None = None) -> dict:
    """session.update from the settings; manual_turns overrides the configured turn mode.

    Server VAD ends and commits the user's turn but does not start the reply: the device asks
    for it once it has stopped sending (see agent.conversation.link).
    """
    td = s.turn_detection
    manual = td.mode == "manual" if manual_turns is None else manual_turns
    session: dict[str, Any] = {
        "modalities": ["audio", "text"],
        "voice": s.voice,
        "instructions": s.instructions,
        "input_audio_format": s.input_audio_format,
        "output_audio_format": s.output_audio_format,
        "temperature": s.temperature,
        "turn_detection": None if manual else {
            "type": "server_vad", "threshold": td.threshold,
            "prefix_padding_ms": td.prefix_padding_ms,
            "silence_duration_ms": td.silence_duration_ms,
            "create_response": False, "interrupt_response": True,
        },
        "input_audio_transcription": None,
    }
    if s.transcription_model:
        tr: dict[str, Any] = {"model": s.transcription_model}
        if s.transcription_language:
            tr["language"] = s.transcription_language
        session["input_audio_transcription"] = tr
    if tools is not None:
        session["tools"] = tools
        session["tool_choice"] = "auto"
    return {"type": "session.update", "session": session}


def turn_detection_update(s: SessionSettings, *, manual: bool) -> dict:
    """A session.update that only switches between server VAD and manual turns."""
    return {"type": "session.update",
            "session": {"turn_detection": session_update(s, manual_turns=manual)["session"]["turn_detection"]}}


def append(audio: bytes) -> dict:
    return {"type": "input_audio_buffer.append", "audio": base64.b64encode(audio).decode("ascii")}


def commit() -> dict:
    return {"type": "input_audio_buffer.commit"}


def clear() -> dict:
    return {"type": "input_audio_buffer.clear"}


def response_create() -> dict:
    return {"type": "response.create"}


def response_cancel() -> dict:
    return {"type": "response.cancel"}


def truncate(item_id: str, audio_end_ms: int) -> dict:
    return {"type": "conversation.item.truncate", "item_id": item_id, "content_index": 0,
            "audio_end_ms": int(audio_end_ms)}


def function_call_output(call_id: str, output: str) -> dict:
    return {"type": "conversation.item.create",
            "item": {"type": "function_call_output", "call_id": call_id, "output": output}}


def function_call_item(call_id: str, name: str, arguments: str) -> dict:
    """A function call replayed into a new session, so its output can follow it there."""
    return {"type": "conversation.item.create",
            "item": {"type": "function_call", "call_id": call_id, "name": name, "arguments": arguments}}


def text_message(role: str, text: str) -> dict:
    """A conversation item replaying an earlier turn's text into a new session."""
    kind = "input_text" if role == "user" else "text"
    return {"type": "conversation.item.create",
            "item": {"type": "message", "role": role, "content": [{"type": kind, "text": text}]}}


def encode(event: dict) -> str:
    return json.dumps(event, separators=(",", ":"))


# ---------------------------------------------------------------- server -> client


@dataclass(frozen=True)
class ServerEvent:
    """A server event the conversation acts on; `raw` keeps every field."""

    type: str
    raw: dict = field(repr=False, compare=False)

    def get(self, key: str, default: Any = None) -> Any:
        return self.raw.get(key, default)


@dataclass(frozen=True)
class AudioDelta(ServerEvent):
    """response.audio.delta with its audio decoded from base64 (bytes in the output format)."""

    response_id: str = ""
    item_id: str = ""
    audio: bytes = b""


@dataclass(frozen=True)
class TextDelta(ServerEvent):
    """A transcript piece: the user's (input_audio_transcription) or the assistant's."""

    item_id: str = ""
    text: str = ""


@dataclass(frozen=True)
class ResponseDone(ServerEvent):
    """response.done: the response's id, status, output items and usage."""

    response_id: str = ""
    status: str = ""
    output: tuple = ()
    usage: dict = field(default_factory=dict)


@dataclass(frozen=True)
class FunctionCall(ServerEvent):
    """response.function_call_arguments.done: a call the device must run."""

    call_id: str = ""
    name: str = ""
    arguments: str = ""


@dataclass(frozen=True)
class ServerError(ServerEvent):
    """error: what the server refused."""

    code: str = ""
    message: str = ""
    error_type: str = ""


def _str(event: dict, key: str, kind: str, *, required: bool = True) -> str:
    value = event.get(key)
    if value is None and not required:
        return ""
    if not isinstance(value, str):
        raise ProtocolError(f"{kind}: field '{key}' must be a string, got {type(value).__name__}")
    return value


def _obj(event: dict, key: str, kind: str) -> dict:
    value = event.get(key)
    if not isinstance(value, dict):
        raise ProtocolError(f"{kind}: field '{key}' must be an object, got {type(value).__name__}")
    return value


def _audio_delta(e: dict, t: str) -> ServerEvent:
    try:
        audio = base64.b64decode(_str(e, "delta", t), validate=True)
    except (binascii.Error, ValueError):
        raise ProtocolError(f"{t}: field 'delta' is not valid base64") from None
    return AudioDelta(t, e, _str(e, "response_id", t, required=False), _str(e, "item_id", t), audio)


def _text(key: str):
    def parse(e: dict, t: str) -> ServerEvent:
        return TextDelta(t, e, _str(e, "item_id", t, required=False), _str(e, key, t))
    return parse


def _response_done(e: dict, t: str) -> ServerEvent:
    r = _obj(e, "response", t)
    output = r.get("output") or []
    usage = r.get("usage") or {}
    if not isinstance(output, list) or not isinstance(usage, dict):
        raise ProtocolError(f"{t}: response.output must be a list and usage an object")
    return ResponseDone(t, e, _str(r, "id", t, required=False), _str(r, "status", t, required=False),
                        tuple(output), usage)


def _function_call(e: dict, t: str) -> ServerEvent:
    return FunctionCall(t, e, _str(e, "call_id", t), _str(e, "name", t, required=False),
                        _str(e, "arguments", t))


def _error(e: dict, t: str) -> ServerEvent:
    err = _obj(e, "error", t)
    return ServerError(t, e, str(err.get("code") or ""), str(err.get("message") or ""),
                       str(err.get("type") or ""))


def _plain(e: dict, t: str) -> ServerEvent:
    return ServerEvent(t, e)


def _with_object(key: str):
    def parse(e: dict, t: str) -> ServerEvent:
        _obj(e, key, t)
        return ServerEvent(t, e)
    return parse


_PARSERS = {
    "session.created": _with_object("session"),
    "session.updated": _with_object("session"),
    "response.audio.delta": _audio_delta,
    "conversation.item.input_audio_transcription.delta": _text("delta"),
    "conversation.item.input_audio_transcription.completed": _text("transcript"),
    "response.audio_transcript.delta": _text("delta"),
    "response.audio_transcript.done": _text("transcript"),
    "response.created": _with_object("response"),
    "response.output_item.added": _with_object("item"),
    "response.output_item.done": _with_object("item"),
    "response.done": _response_done,
    "response.function_call_arguments.done": _function_call,
    "error": _error,
}


def parse(frame: str | bytes) -> ServerEvent:
    """One server frame as an event; ProtocolError (naming the type) when it is malformed.

    Unknown types parse to a plain ServerEvent: the protocol grows, and the device must not care.
    """
    if isinstance(frame, bytes):
        raise ProtocolError("binary frame: the realtime protocol sends JSON text frames only")
    try:
        data = json.loads(frame)
    except (ValueError, RecursionError):
        raise ProtocolError("frame is not valid JSON") from None
    if not isinstance(data, dict):
        raise ProtocolError(f"frame is a JSON {type(data).__name__}, not an event object")
    kind = data.get("type")
    if not isinstance(kind, str) or not kind:
        raise ProtocolError("event has no 'type'")
    return _PARSERS.get(kind, _plain)(data, kind)
