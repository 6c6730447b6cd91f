"""Client event checks and session config merging: pure functions, no I/O.

The devserver must not depend on the openai package (a test extra), so the shapes it accepts
are written out here: each check returns an error (code, message, param) or None.
"""

from __future__ import annotations

import base64
import binascii
import copy
import itertools
import secrets
from typing import Any

FORMATS = ("pcm16", "g711_ulaw", "g711_alaw")

DEFAULT_TURN_DETECTION = {"type": "server_vad", "threshold": 0.5, "prefix_padding_ms": 300,
                          "silence_duration_ms": 500, "create_response": True,
                          "interrupt_response": True}


def default_session(session_id: str) -> dict[str, Any]:
    """The effective config of a new session (OpenAI's beta defaults)."""
    return {
        "id": session_id, "object": "realtime.session",
        "modalities": ["audio", "text"], "instructions": "", "voice": "alloy",
        "input_audio_format": "pcm16", "output_audio_format": "pcm16",
        "input_audio_transcription": None,
        "turn_detection": dict(DEFAULT_TURN_DETECTION),
        "tools": [], "tool_choice": "auto", "temperature": 0.8,
        "max_response_output_tokens": "inf",
    }


class Ids:
    """Server-side ids: event_..., item_..., resp_..., call_..., unique per server."""

    def __init__(self):
        self._n = itertools.count(1)
        self._salt = secrets.token_hex(3)

    def new(self, prefix: str) -> str:
        return f"{prefix}_{self._salt}{next(self._n):06d}"


Problem = tuple[str, str, str | None]   # (code, message, param)


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _typed(event: dict, name: str, check, want: str, required: bool = True) -> Problem | None:
    if name not in event:
        return ("missing_required_parameter", f"Missing required parameter: '{name}'.", name) if required else None
    if not check(event[name]):
        return "invalid_type", f"Invalid type for '{name}': expected {want}.", name
    return None


def _is_dict(v: Any) -> bool:
    return isinstance(v, dict)


def _is_str(v: Any) -> bool:
    return isinstance(v, str)


# type -> [(field, check, wanted type, required)]
_FIELDS: dict[str, list[tuple[str, Any, str, bool]]] = {
    "session.update": [("session", _is_dict, "an object", True)],
    "input_audio_buffer.append": [("audio", _is_str, "a base64 string", True)],
    "input_audio_buffer.commit": [],
    "input_audio_buffer.clear": [],
    "response.create": [("response", lambda v: v is None or isinstance(v, dict), "an object", False)],
    "response.cancel": [("response_id", lambda v: v is None or isinstance(v, str), "a string", False)],
    "conversation.item.create": [("item", _is_dict, "an object", True),
                                 ("previous_item_id", lambda v: v is None or isinstance(v, str),
                                  "a string", False)],
    "conversation.item.truncate": [("item_id", _is_str, "a string", True),
                                   ("content_index", _is_int, "an integer", True),
                                   ("audio_end_ms", _is_int, "an integer", True)],
    "conversation.item.delete": [("item_id", _is_str, "a string", True)],
    "conversation.item.retrieve": [("item_id", _is_str, "a string", True)],
}

# Valid in the OpenAI API but not over Mira's WebSocket: refused with a clear error.
UNSUPPORTED = ("output_audio_buffer.clear", "transcription_session.update")


def check_event(event: Any) -> Problem | None:
    """Whether a parsed client frame is an event this server knows, with fields of the right types."""
    if not isinstance(event, dict):
        return "invalid_event", "The event must be a JSON object.", None
    kind = event.get("type")
    if not isinstance(kind, str):
        return "invalid_event", "The event has no 'type' string.", "type"
    if "event_id" in event and not isinstance(event["event_id"], (str, type(None))):
        return "invalid_type", "Invalid type for 'event_id': expected a string.", "event_id"
    if kind in UNSUPPORTED:
        return "unsupported_event", f"'{kind}' is not supported on a WebSocket session.", "type"
    if kind not in _FIELDS:
        return "invalid_event", f"Unknown event type '{kind[:80]}'.", "type"
    for name, check, want, required in _FIELDS[kind]:
        problem = _typed(event, name, check, want, required)
        if problem:
            return problem
    return None


def decode_audio(text: str) -> bytes | None:
    """Strict base64 -> bytes; None when the text is not base64."""
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        return None


_SESSION_KEYS = {"modalities", "instructions", "voice", "input_audio_format", "output_audio_format",
                 "input_audio_transcription", "turn_detection", "tools", "tool_choice", "temperature",
                 "max_response_output_tokens", "model", "input_audio_noise_reduction", "speed",
                 "tracing", "id", "object"}
_TD_KEYS = {"type", "threshold", "prefix_padding_ms", "silence_duration_ms", "create_response",
            "interrupt_response", "eagerness"}


def merge_session(current: dict[str, Any], update: dict[str, Any]) -> tuple[dict[str, Any], Problem | None]:
    """The config after a partial session.update; only sent fields change, nested objects merge.

    Returns (new config, None), or (current config unchanged, problem): an update is all or nothing.
    """
    new = copy.deepcopy(current)
    for key, value in update.items():
        p = f"session.{key}"
        if key not in _SESSION_KEYS:
            return current, ("unknown_parameter", f"Unknown parameter: '{p}'.", p)
        if key in ("id", "object", "model", "tracing", "input_audio_noise_reduction", "speed"):
            continue  # accepted and ignored, as a cloud model setting means nothing here
        if key in ("input_audio_format", "output_audio_format"):
            if value not in FORMATS:
                return current, ("invalid_value", f"Invalid value for '{p}': use one of {', '.join(FORMATS)}.", p)
        elif key in ("instructions", "voice", "tool_choice"):
            if not isinstance(value, str):
                return current, ("invalid_type", f"Invalid type for '{p}': expected a string.", p)
        elif key == "modalities":
            if not isinstance(value, list) or not value or not all(m in ("audio", "text") for m in value):
                return current, ("invalid_value", f"Invalid value for '{p}': a list of 'audio' and 'text'.", p)
        elif key == "temperature":
            if not _is_number(value):
                return current, ("invalid_type", f"Invalid type for '{p}': expected a number.", p)
        elif key == "max_response_output_tokens":
            if value != "inf" and not (_is_int(value) and value > 0):
                return current, ("invalid_value", f"Invalid value for '{p}': a positive integer or 'inf'.", p)
        elif key == "tools":
            problem = _check_tools(value)
            if problem:
                return current, problem
        elif key == "input_audio_transcription":
            if value is not None:
                if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
                    return current, ("invalid_type", f"Invalid type for '{p}': expected an object of strings or null.", p)
                value = {**(new[key] or {}), **value}
        elif key == "turn_detection":
            if value is not None:
                problem = _check_turn_detection(value)
                if problem:
                    return current, problem
                value = {**(new[key] or DEFAULT_TURN_DETECTION), **value}
        new[key] = value
    return new, None


def _check_turn_detection(td: Any) -> Problem | None:
    p = "session.turn_detection"
    if not isinstance(td, dict):
        return "invalid_type", f"Invalid type for '{p}': expected an object or null.", p
    for key, value in td.items():
        if key not in _TD_KEYS:
            return "unknown_parameter", f"Unknown parameter: '{p}.{key}'.", f"{p}.{key}"
    if td.get("type", "server_vad") != "server_vad":
        return "invalid_value", f"Invalid value for '{p}.type': only 'server_vad' is supported here.", f"{p}.type"
    if "threshold" in td and not (_is_number(td["threshold"]) and 0 <= td["threshold"] <= 1):
        return "invalid_value", f"Invalid value for '{p}.threshold': a number from 0 to 1.", f"{p}.threshold"
    for key in ("prefix_padding_ms", "silence_duration_ms"):
        if key in td and not (_is_int(td[key]) and 0 <= td[key] <= 60000):
            return "invalid_value", f"Invalid value for '{p}.{key}': an integer of milliseconds.", f"{p}.{key}"
    for key in ("create_response", "interrupt_response"):
        if key in td and not isinstance(td[key], bool):
            return "invalid_type", f"Invalid type for '{p}.{key}': expected a boolean.", f"{p}.{key}"
    return None


def _check_tools(tools: Any) -> Problem | None:
    p = "session.tools"
    if not isinstance(tools, list):
        return "invalid_type", f"Invalid type for '{p}': expected a list.", p
    for i, tool in enumerate(tools):
        if not isinstance(tool, dict) or tool.get("type", "function") != "function" \
                or not isinstance(tool.get("name"), str) or not tool["name"]:
            return "invalid_value", f"Invalid value for '{p}[{i}]': a function with a name.", f"{p}[{i}]"
        if "parameters" in tool and not isinstance(tool["parameters"], dict):
            return "invalid_type", f"Invalid type for '{p}[{i}].parameters': a JSON Schema object.", f"{p}[{i}]"
    return None


_PART_TYPES = ("input_text", "input_audio", "item_reference", "text", "audio")
_ITEM_STRINGS = {"message": ("id",), "function_call": ("id", "name", "call_id", "arguments"),
                 "function_call_output": ("id", "call_id", "output")}
_ITEM_REQUIRED = {"message": (), "function_call": ("name", "call_id"), "function_call_output": ("call_id", "output")}


def clean_item(item: dict[str, Any]) -> tuple[dict[str, Any] | None, Problem | None]:
    """A client's conversation item reduced to the fields the server keeps, or what is wrong with it.

    The server echoes items back (conversation.item.created), so only well-typed fields survive.
    """
    kind = item.get("type")
    if kind not in _ITEM_STRINGS:
        return None, ("invalid_value", "Invalid value for 'item.type': message, function_call or "
                      "function_call_output.", "item.type")
    out: dict[str, Any] = {"type": kind}
    for key in _ITEM_STRINGS[kind]:
        if key in item:
            if not isinstance(item[key], str):
                return None, ("invalid_type", f"Invalid type for 'item.{key}': expected a string.", f"item.{key}")
            out[key] = item[key]
    for key in _ITEM_REQUIRED[kind]:
        if key not in out:
            return None, ("missing_required_parameter", f"Missing required parameter: 'item.{key}'.", f"item.{key}")
    if kind == "message":
        role, content = item.get("role"), item.get("content")
        if role not in ("user", "assistant", "system"):
            return None, ("invalid_value", "Invalid value for 'item.role': user, assistant or system.", "item.role")
        if not isinstance(content, list):
            return None, ("invalid_type", "Invalid type for 'item.content': expected a list.", "item.content")
        parts = []
        for i, part in enumerate(content):
            p = f"item.content[{i}]"
            if not isinstance(part, dict) or part.get("type") not in _PART_TYPES:
                return None, ("invalid_value", f"Invalid value for '{p}': a part of type "
                              f"{', '.join(_PART_TYPES)}.", p)
            kept = {"type": part["type"]}
            for key in ("text", "transcript", "audio", "id"):
                if key in part and part[key] is not None:
                    if not isinstance(part[key], str):
                        return None, ("invalid_type", f"Invalid type for '{p}.{key}': expected a string.",
                                      f"{p}.{key}")
                    kept[key] = part[key]
            parts.append(kept)
        out.update(role=role, content=parts)
    return out, None
