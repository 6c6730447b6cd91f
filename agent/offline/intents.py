"""What an offline sentence asks for: the recogniser's words -> one Command, or None.

The grammar only lets through the shapes of agent.offline.grammar, so this reads words, not
free text: a command word says which intent, numbers before a unit say how long.
"""

from __future__ import annotations

from dataclasses import dataclass

from agent.offline.grammar import COMMAND_WORDS, LABELS, TEENS, TENS, UNITS, WAKE_WORDS

_NUMBERS = {w: i for i, w in enumerate(UNITS)} | {w: 10 + i for i, w in enumerate(TEENS)} \
    | {w: 10 * i for i, w in enumerate(TENS) if w}
_UNIT_SECONDS = {"second": 1, "seconds": 1, "minute": 60, "minutes": 60, "hour": 3600, "hours": 3600}
VOLUME_STEP = 10


@dataclass(frozen=True)
class Command:
    """One thing asked for offline."""

    intent: str
    """set_timer, cancel_timer, time_left, time, stop, volume or mute."""
    seconds: int = 0
    """set_timer: how long."""
    label: str = ""
    """Timer intents: the timer's name ("" for any)."""
    level: int | None = None
    """volume: the new level 0..100, or None for a step."""
    step: int = 0
    """volume: +10 louder, -10 quieter (when level is None)."""


def numbers(tokens: list[str]) -> list[tuple[int, int, int]]:
    """(value, start, end) of each number said in words: "twenty five" is 25, "a" / "an" is 1."""
    found, i = [], 0
    while i < len(tokens):
        w = tokens[i]
        if w in _NUMBERS:
            value, end = _NUMBERS[w], i + 1
            if w in TENS and end < len(tokens) and tokens[end] in UNITS[1:]:
                value, end = value + _NUMBERS[tokens[end]], end + 1
            if end < len(tokens) and tokens[end] == "hundred" and value < 10:
                value, end = value * 100, end + 1
            found.append((value, i, end))
            i = end
        elif w in ("a", "an") and i + 1 < len(tokens) and tokens[i + 1] in ("hundred", "minute", "hour"):
            found.append((100, i, i + 2) if tokens[i + 1] == "hundred" else (1, i, i + 1))
            i += 2 if tokens[i + 1] == "hundred" else 1
        else:
            i += 1
    return found


def duration(tokens: list[str]) -> int:
    """Seconds said as "<n> minutes [and <m> seconds]", "half an hour", "a minute and a half"."""
    if "half" in tokens:
        at = tokens.index("half")
        if tokens[at + 1:at + 3] == ["an", "hour"]:
            return 1800
        before = [u for u in tokens[:at] if u in _UNIT_SECONDS]
        return 90 * _UNIT_SECONDS[before[-1]] // 60 if before else 0
    total = 0
    for value, _, end in numbers(tokens):
        if end < len(tokens) and tokens[end] in _UNIT_SECONDS:
            total += value * _UNIT_SECONDS[tokens[end]]
    return total


def _label(tokens: list[str]) -> str:
    return next((w for w in tokens if w in LABELS), "")


def _strip_wake_word(tokens: list[str]) -> list[str]:
    for wake in sorted(WAKE_WORDS, key=len, reverse=True):
        w = wake.split()
        if tokens[:len(w)] == w:
            return tokens[len(w):]
    return tokens


def understand(text: str) -> Command | None:
    """The command in the recogniser's words, or None for anything else (other words, nothing)."""
    tokens = [t for t in _strip_wake_word(text.lower().split()) if t != "please"]
    if not tokens or not COMMAND_WORDS.intersection(tokens) and "louder" not in tokens:
        return None
    said = set(tokens)
    if "timer" in said or "timers" in said:
        if said & {"cancel", "stop", "delete", "remove"}:
            return Command("cancel_timer", label=_label(tokens))
        if said & {"how", "long", "left"}:
            return Command("time_left", label=_label(tokens))
        seconds = duration(tokens)
        return Command("set_timer", seconds=seconds, label=_label(tokens)) if seconds else None
    if said & {"how"} and said & {"left", "long"}:
        return Command("time_left")
    if "time" in said:
        return Command("time")
    if "listening" in said or "mute" in said:
        return Command("mute")
    if said & {"volume", "louder", "quieter", "softer", "turn"}:
        return _volume(tokens)
    if said & {"stop", "quiet", "enough"}:
        return Command("stop")
    return None


def _volume(tokens: list[str]) -> Command | None:
    said = set(tokens)
    if "maximum" in said:
        return Command("volume", level=100)
    if said & {"up", "louder"}:
        return Command("volume", step=VOLUME_STEP)
    if said & {"down", "quieter", "softer"}:
        return Command("volume", step=-VOLUME_STEP)
    said_numbers = numbers(tokens)
    if not said_numbers:
        return None
    level = said_numbers[-1][0]
    # "volume seven" is the 0-10 scale of most speakers; "volume seventy" or "... percent" is %
    if level <= 10 and "percent" not in said:
        level *= 10
    return Command("volume", level=min(100, level))
