"""The tools a smart speaker has with no setup: time, volume, mute, goodbye and timers."""

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Callable

from agent.errors import ToolError
from agent.tools.device import DeviceControls
from agent.tools.timers import Timer

VOLUME_STEP = 10


@dataclass(frozen=True)
class Builtin:
    """One built-in: the tool it is offered as by default, and what it does."""

    name: str
    tool: str
    description: str
    parameters: dict[str, Any]
    run: Callable[[dict[str, Any], DeviceControls], dict[str, Any]]


def _object(properties: dict[str, Any] | None = None, required: list[str] = ()) -> dict[str, Any]:
    schema = {"type": "object", "properties": properties or {}, "additionalProperties": False}
    if required:
        schema["required"] = list(required)
    return schema


def get_time(args: dict[str, Any], device: DeviceControls, now: datetime | None = None) -> dict:
    now = now or datetime.now().astimezone()  # local time zone (TZ or /etc/localtime)
    offset = now.strftime("%z")
    return {"time": now.strftime("%H:%M"), "date": f"{now:%A} {now.day} {now:%B %Y}",
            "timezone": now.tzname() or "", "utc_offset": f"{offset[:3]}:{offset[3:]}",
            "iso": now.isoformat(timespec="seconds")}


def volume(args: dict[str, Any], device: DeviceControls) -> dict:
    action = args["action"]
    if action == "get":
        return {"volume": device.get_volume()}
    if action == "set":
        if "level" not in args:
            raise ToolError("volume set needs level (0 to 100)")
        level = args["level"]
    else:
        step = args.get("step", VOLUME_STEP)
        level = device.get_volume() + (step if action == "up" else -step)
    level = max(0, min(100, int(level)))
    device.set_volume(level)
    return {"volume": level}


def mute(args: dict[str, Any], device: DeviceControls) -> dict:
    device.set_muted(args["muted"])
    return {"muted": args["muted"]}


def end_conversation(args: dict[str, Any], device: DeviceControls) -> dict:
    device.end_conversation()
    return {"ok": True, "note": "say a short goodbye; the speaker stops listening after it"}


def _timer_json(t: Timer) -> dict:
    return {"id": t.id, "label": t.label, "remaining_s": round(t.remaining())}


def _find_timer(args: dict[str, Any], device: DeviceControls) -> Timer:
    timers = device.timers.list() + device.timers.ringing()
    if "id" in args:
        found = [t for t in timers if t.id == args["id"]]
    elif args.get("label"):
        found = [t for t in timers if t.label.lower() == args["label"].strip().lower()]
    else:
        found = timers if len(timers) == 1 else []
        if len(timers) > 1:
            raise ToolError("several timers are running; say which by id or label: "
                            + ", ".join(f"{t.id} {t.label!r}" for t in timers))
    if not found:
        raise ToolError("no such timer is running")
    return found[0]


def timer(args: dict[str, Any], device: DeviceControls) -> dict:
    timers = device.timers
    if args["action"] == "set":
        if "seconds" not in args:
            raise ToolError("timer set needs seconds")
        try:
            t = timers.set(args["seconds"], args.get("label", "").strip())
        except ValueError as e:
            raise ToolError(str(e)) from None
        rings_at = datetime.now().astimezone() + timedelta(seconds=t.seconds)
        return {"id": t.id, "label": t.label, "seconds": round(t.seconds),
                "rings_at": rings_at.strftime("%H:%M:%S")}
    if args["action"] == "cancel":
        t = _find_timer(args, device)
        timers.cancel(t.id)
        return {"cancelled": {"id": t.id, "label": t.label}}
    return {"timers": [_timer_json(t) for t in timers.list()],
            "ringing": [{"id": t.id, "label": t.label} for t in timers.ringing()]}


BUILTINS: dict[str, Builtin] = {b.name: b for b in [
    Builtin("time", "get_time", "Current local time, date and time zone.", _object(), get_time),
    Builtin("volume", "volume",
            "Get the speaker's volume (0-100), set it, or turn it up or down.",
            _object({"action": {"type": "string", "enum": ["get", "set", "up", "down"]},
                     "level": {"type": "integer", "minimum": 0, "maximum": 100,
                               "description": "For set: the new volume, 0-100."},
                     "step": {"type": "integer", "minimum": 1, "maximum": 100,
                              "description": f"For up/down: how much (default {VOLUME_STEP})."}},
                    ["action"]), volume),
    Builtin("mute", "mute",
            "Turn the microphone off (muted true) or on. While muted the speaker hears nothing, "
            "not even its wake word, until a button press unmutes it.",
            _object({"muted": {"type": "boolean"}}, ["muted"]), mute),
    Builtin("end_conversation", "end_conversation",
            "End the conversation when the user says goodbye or has nothing more to ask.",
            _object(), end_conversation),
    Builtin("timer", "timer",
            "Set a countdown timer that rings even after the conversation ends, cancel one "
            "(by id or label), or list the running timers.",
            _object({"action": {"type": "string", "enum": ["set", "cancel", "list"]},
                     "seconds": {"type": "integer", "minimum": 1, "maximum": 86400,
                                 "description": "For set: duration in seconds."},
                     "label": {"type": "string", "maxLength": 40,
                               "description": "A short name, e.g. pasta."},
                     "id": {"type": "integer", "minimum": 1,
                            "description": "For cancel: the timer's id."}},
                    ["action"]), timer),
]}
