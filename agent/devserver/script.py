"""What the devserver understands and answers: phrase -> reply text, or phrase -> function calls."""

from __future__ import annotations

import json
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agent.errors import ConfigError

DEFAULT_SCRIPT = Path(__file__).with_name("default_script.toml")

_WORD = re.compile(r"[a-z0-9']+")


def words(text: str) -> tuple[str, ...]:
    """Lower-case words of a text, punctuation dropped: the form phrases are compared in."""
    return tuple(_WORD.findall(text.lower()))


@dataclass(frozen=True)
class Call:
    """One function call the model makes."""

    name: str
    arguments: dict[str, Any] = field(default_factory=dict)

    @property
    def arguments_json(self) -> str:
        return json.dumps(self.arguments, separators=(",", ":"), default=str)


@dataclass(frozen=True)
class Entry:
    """One phrase of the script and what it leads to: a reply, or function calls."""

    say: str
    reply: str = ""
    calls: tuple[Call, ...] = ()


@dataclass(frozen=True)
class Script:
    """The phrases the server knows, in order, plus the fallback and the tool-result reply."""

    entries: tuple[Entry, ...]
    fallback: str = "Sorry, I did not understand."
    tool_reply: str = "Done: {output}"
    prefixes: tuple[str, ...] = ()

    @classmethod
    def default(cls) -> Script:
        return cls.load(DEFAULT_SCRIPT)

    @classmethod
    def load(cls, path: str | Path) -> Script:
        """Read a script TOML file (see default_script.toml); ConfigError names the bad key."""
        path = Path(path)
        try:
            data = tomllib.loads(path.read_text(encoding="utf-8"))
        except OSError as e:
            raise ConfigError(f"cannot read the devserver script {path} ({e.strerror}); "
                              f"check the --script path") from None
        except tomllib.TOMLDecodeError as e:
            raise ConfigError(f"the devserver script {path} is not valid TOML ({e})") from None
        return cls.from_dict(data, source=str(path))

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = "script") -> Script:
        def bad(key: str, want: str) -> ConfigError:
            return ConfigError(f"{source}: {key} must be {want}")

        known = {"prefixes", "fallback", "tool_reply", "phrases"}
        for key in data:
            if key not in known:
                raise bad(key, f"one of {', '.join(sorted(known))} (unknown key)")
        fallback = data.get("fallback", cls.fallback)
        tool_reply = data.get("tool_reply", cls.tool_reply)
        prefixes = data.get("prefixes", [])
        if not isinstance(fallback, str):
            raise bad("fallback", "a string")
        if not isinstance(tool_reply, str):
            raise bad("tool_reply", "a string")
        if not isinstance(prefixes, list) or not all(isinstance(p, str) for p in prefixes):
            raise bad("prefixes", "a list of strings")
        phrases = data.get("phrases", [])
        if not isinstance(phrases, list):
            raise bad("phrases", "an array of tables ([[phrases]])")
        entries = [_entry(p, f"phrases[{i}]", bad) for i, p in enumerate(phrases)]
        return cls(tuple(entries), fallback, tool_reply, tuple(" ".join(words(p)) for p in prefixes))

    @property
    def phrases(self) -> list[str]:
        return [e.say for e in self.entries]

    def match(self, transcript: str) -> Entry | None:
        """The entry whose phrase the transcript is (prefixes ignored), else one it contains."""
        said = words(transcript)
        for prefix in sorted(self.prefixes, key=len, reverse=True):
            p = tuple(prefix.split())
            if p and said[:len(p)] == p:
                said = said[len(p):]
                break
        for entry in self.entries:
            if words(entry.say) == said:
                return entry
        for entry in self.entries:
            w = words(entry.say)
            if any(said[i:i + len(w)] == w for i in range(len(said) - len(w) + 1)):
                return entry
        return None

    def reply_to(self, transcript: str) -> Entry:
        """What to do about a user turn: the matching entry, or a reply with the fallback."""
        return self.match(transcript) or Entry(say="", reply=self.fallback)

    def after_tools(self, results: list[tuple[str, str]]) -> str:
        """The reply once function results (name, output) came back."""
        return " ".join(self.tool_reply.format(name=n, output=o) for n, o in results)


def _entry(raw: Any, key: str, bad) -> Entry:
    if not isinstance(raw, dict):
        raise bad(key, "a table")
    for k in raw:
        if k not in ("say", "reply", "calls"):
            raise bad(f"{key}.{k}", "one of say, reply, calls (unknown key)")
    say, reply, calls = raw.get("say"), raw.get("reply", ""), raw.get("calls", [])
    if not isinstance(say, str) or not words(say):
        raise bad(f"{key}.say", "a phrase of at least one word")
    if not isinstance(reply, str):
        raise bad(f"{key}.reply", "a string")
    if not isinstance(calls, list):
        raise bad(f"{key}.calls", "an array of {name, arguments} tables")
    if bool(reply) == bool(calls):
        raise bad(key, "a table with either reply or calls (exactly one)")
    parsed = []
    for j, c in enumerate(calls):
        ck = f"{key}.calls[{j}]"
        if not isinstance(c, dict) or not isinstance(c.get("name"), str) or not c["name"]:
            raise bad(ck, "a table with a name string")
        args = c.get("arguments", {})
        if not isinstance(args, dict) or set(c) - {"name", "arguments"}:
            raise bad(ck, "a table of name and arguments (a table)")
        parsed.append(Call(c["name"], args))
    return Entry(" ".join(words(say)), reply, tuple(parsed))
