"""Acting on an offline command with the built-in tools the model would call, and the fixed
sentence that answers it."""

from __future__ import annotations

import json
import logging
from datetime import datetime

from agent.offline.intents import Command

log = logging.getLogger(__name__)

OFFLINE_SENTENCE = ("I can't reach the internet right now. I can still set timers, tell the "
                    "time and change the volume. Please check the network connection.")
NOT_HEARD = "Sorry, I didn't catch that. I'm offline, so I can only do timers, the time and volume."
UNAVAILABLE = "I'm offline, and I can't do that on this speaker."

_BUILTIN = {"set_timer": "timer", "cancel_timer": "timer", "time_left": "timer", "time": "time",
            "volume": "volume", "mute": "mute"}


def spoken_duration(seconds: float) -> str:
    """2 minutes and 5 seconds, as a sentence says it."""
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    parts = [f"{n} {unit}{'s' if n != 1 else ''}" for n, unit in
             ((hours, "hour"), (minutes, "minute"), (secs, "second")) if n]
    if not parts:
        return "no time"
    return parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]


def spoken_time(now: datetime) -> str:
    """The time as a speaker says it: 'It's 7:05 PM.'"""
    return f"It's {now.strftime('%I:%M %p').lstrip('0')}."


def _named(label: str) -> str:
    return f"{label} timer" if label else "timer"


def act(command: Command, toolbox, timers, now: datetime | None = None) -> str:
    """Run the command through the toolbox (validated and logged like a model's call); its answer."""
    if command.intent == "stop":
        stopped = timers.stop_ringing() if timers is not None else []
        return "Stopped." if stopped else "Okay."
    tool = toolbox.builtin_tool(_BUILTIN[command.intent]) if toolbox is not None else None
    if tool is None:
        return UNAVAILABLE
    args = _arguments(command, timers)
    result = toolbox.run(tool, json.dumps(args))
    output = json.loads(result.output)
    if not result.ok:
        return _failure(command, output.get("error", ""))
    return _answer(command, output, now)


def _arguments(command: Command, timers) -> dict:
    if command.intent == "set_timer":
        args = {"action": "set", "seconds": command.seconds}
        return args | ({"label": command.label} if command.label else {})
    if command.intent == "cancel_timer":
        return {"action": "cancel"} | ({"label": command.label} if command.label else {})
    if command.intent == "time_left":
        return {"action": "list"}
    if command.intent == "volume":
        if command.level is not None:
            return {"action": "set", "level": command.level}
        return {"action": "up" if command.step > 0 else "down", "step": abs(command.step)}
    if command.intent == "mute":
        return {"muted": True}
    return {}


def _answer(command: Command, output: dict, now: datetime | None) -> str:
    if command.intent == "set_timer":
        return f"{_named(output.get('label', '')).capitalize()} set for {spoken_duration(output['seconds'])}."
    if command.intent == "cancel_timer":
        return f"{_named(output['cancelled'].get('label', '')).capitalize()} cancelled."
    if command.intent == "time_left":
        timers = output.get("timers", [])
        if command.label:
            timers = [t for t in timers if t["label"].lower() == command.label]
        if not timers:
            return f"There is no {_named(command.label)} running."
        return " ".join(f"The {_named(t['label'])} has {spoken_duration(t['remaining_s'])} left."
                        for t in timers[:3])
    if command.intent == "time":
        return spoken_time(now or datetime.fromisoformat(output["iso"]))
    if command.intent == "volume":
        return f"Volume {output['volume']}."
    if command.intent == "mute":
        return "Microphone off. Press the button to turn it back on."
    return "Okay."


def _failure(command: Command, error: str) -> str:
    log.info("offline %s failed: %s", command.intent, error)
    if "no such timer" in error:
        return f"There is no {_named(command.label)} running."
    if "several timers" in error:
        return "Several timers are running. Say which one, like: cancel the pasta timer."
    if "already running" in error:
        return "Too many timers are running. Cancel one first."
    return "Sorry, that didn't work."
