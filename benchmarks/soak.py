"""The room soak (issue 19): `make soak`, or `python -m benchmarks.soak [--conversations N]
[--minutes M] [--seed S] [--keep DIR]`. Real time: about 45 s a conversation.

The real `mira-agent run` process with the example config (echo canceller, voice barge-in,
"hey jarvis", earcons; only the server's address changed) on the PulseAudio null-sink echo path
of benchmarks/room.py: it plays into the sink and its microphone is the sink's monitor. A quiet
room's hiss (pink noise, -60 dBFS) and a scripted user (seeded; espeak-ng voices the wake model
hears, at the reply's own level in the sink) go into the same sink: wake commands, follow-ups in
the follow-up window, spoken barge-ins over long replies ("stop", "hello", "hey jarvis, stop"),
and silences. The project's server (DevServer on 127.0.0.1) answers each turn after 300-600 ms,
as the real service does.

Three records are read against each other: the daemon's log (its state changes, wake words and
voice barge-ins, time-stamped to the ms), the server's record (every response.done: completed,
or cancelled and why), and the user's own stream (when each utterance sounded in the sink). One
table comes out, each figure beside the issue's target; the exit status is 1 if any misses.
Every wait is bounded; the PulseAudio server, the daemon and the server are stopped at the end.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path

import numpy as np

from benchmarks.common import Row, median, print_table
from benchmarks.room import KEY, RATE, DaemonProcess, Room, at_level, config_text, pink

WAKE_VOICES = [("en-us+f2", 150), ("en-us+f3", 130), ("en+m5", 150), ("en-gb", 130),
               ("en-us+f4", 150)]  # voices and speeds the hey_jarvis model hears (tests/test_wake.py)
TIME, STORY = "what time is it?", "tell me a story"
BARGE_INS = ["stop", "hello", "hey jarvis, stop"]
REPLY_DB = -18.5 + 20 * np.log10(0.8 ** 2)  # espeak's sounding level at the default volume (80 %)
ROOM_DB = -60.0
DELAY_MS = (300, 600)
REST_S = 6.0          # after this long idle the daemon's speaker rests: what "idle" CPU means
HONOURED_S = 0.4
CORES = os.cpu_count() or 1
_LINE = re.compile(r"(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d)\.(\d{3}) (\w+) ([\w.]+): (.*)")
_STATE = re.compile(r"state (\w+) -> (\w+) \((.*)\)|started, (\w+)")
_WAKE = re.compile(r"wake word \S+ heard")


@dataclass
class Said:
    """One utterance of the scripted user, and when it sounded in the sink (monotonic s)."""

    text: str
    kind: str  # wake (a wake command while idle), follow (in the follow-up window), barge
    item: str
    first: int  # first and last sounding sample of its audio
    last: int
    seconds: float
    onset: float | None = None
    end: float | None = None

    def during(self, t: float, before: float = 0.0, after: float = 0.0) -> bool:
        return self.onset is not None and self.onset - before <= t <= (self.end or t) + after


@dataclass
class Event:
    t: float
    kind: str  # state, wake, voice, warning
    text: str
    state: tuple[str, str, str] | None = None  # (from, to, reason) of a state change


class DaemonLog:
    """The daemon's stderr as it grows: each line's wall-clock stamp put on the monotonic clock."""

    def __init__(self, path: Path):
        self.path, self._pos, self.events = path, 0, []
        self._offset = time.time() - time.monotonic()

    def poll(self) -> None:
        with open(self.path, "rb") as f:
            f.seek(self._pos)
            chunk = f.read()
        chunk = chunk[:chunk.rfind(b"\n") + 1]
        self._pos += len(chunk)
        for line in chunk.decode(errors="replace").splitlines():
            m = _LINE.match(line)
            if not m:
                continue
            stamp, ms, level, _, text = m.groups()
            t = time.mktime(datetime.strptime(stamp, "%Y-%m-%d %H:%M:%S").timetuple()) \
                + int(ms) / 1000 - self._offset
            s = _STATE.match(text)
            kind = ("state" if s else "wake" if _WAKE.match(text) else
                    "voice" if text.startswith("voice heard") else
                    "warning" if level in ("WARNING", "ERROR", "CRITICAL") else "info")
            state = None if not s else s.groups()[:3] if s[1] else ("", s[4], "started")
            self.events.append(Event(t, kind, text, state))

    @property
    def state(self) -> str:
        return next((e.state[1] for e in reversed(self.events) if e.state), "idle")

    def state_at(self, t: float) -> str:
        return next((e.state[1] for e in reversed(self.events) if e.state and e.t <= t), "idle")

    def since(self, t: float) -> float:
        """Seconds the daemon has been in its present state."""
        last = next((e.t for e in reversed(self.events) if e.state), None)
        return float("inf") if last is None else t - last


class Soak:
    """The room, the daemon, the server and the scripted user; `run()` then `rows()`."""

    def __init__(self, folder: Path, room: Room, server, args):
        from agent.audio.playback import PyAudioSpeaker  # (after the room's ALSA config is set)
        from agent.audio.settings import AudioSettings
        from agent.demo import speak

        self.args, self.server, self.rng = args, server, np.random.default_rng(args.seed)
        self.speak = speak
        self.mouth = PyAudioSpeaker(AudioSettings(output_rate=RATE, volume=100))
        self.hiss_source = pink(30.0, ROOM_DB, args.seed)
        self.hiss = PyAudioSpeaker(AudioSettings(output_rate=RATE, volume=100))
        config = folder / "agent.toml"
        config.write_text(config_text(server.url))
        self.daemon = DaemonProcess(folder, config, room)
        self.log = DaemonLog(self.daemon.log_path)
        self.said: list[Said] = []
        self.samples: list[tuple] = []  # (t, state, s in it, conversations, cpu, rss, fds, threads)
        self.server_log: list[tuple[float, str, dict]] = []  # (t, type, response) as polled
        self._seen: dict[str, int] = {}
        self.conversations = 0
        self._voices: dict[tuple, np.ndarray] = {}
        self._next_sample = 0.0

    def close(self) -> None:
        for part in (self.mouth, self.hiss):
            part.close()
        self.daemon.stop()

    # -- the clock of the script: every wait goes through tick() ----------------------------

    def tick(self) -> None:
        now = time.monotonic()
        self.log.poll()
        for s in self.said[-3:]:
            if s.end is None:
                played = self.mouth.played_samples(s.item)
                if s.onset is None and played > s.first:
                    s.onset = now - (played - s.first) / RATE
                if played > s.last:
                    s.end = now - (played - s.last) / RATE
        for session in self.server.sessions:
            sent = session.server_events
            for e in sent[self._seen.get(session.session_id, 0):len(sent)]:
                if e.get("type", "").startswith(("response.created", "response.done",
                                                 "input_audio_buffer.speech")):
                    self.server_log.append((now, e["type"], e.get("response") or {}))
            self._seen[session.session_id] = len(sent)
        if self.hiss.buffer.queued_samples < RATE // 2:
            self.hiss.play(self.hiss_source, "hiss")
        if now >= self._next_sample:
            self._next_sample = now + 1.0
            self._sample(now)
        time.sleep(0.01)

    def _sample(self, now: float) -> None:
        d = self.daemon
        if d.proc.poll() is None:
            self.samples.append((now, self.log.state, self.log.since(now), self.conversations,
                                 d.cpu_seconds(), d.rss_kb(), d.fds(), d.threads()))

    def wait(self, seconds: float) -> None:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            self.tick()

    def until(self, condition, timeout: float) -> bool:
        end = time.monotonic() + timeout
        while time.monotonic() < end and not condition():
            self.tick()
        return condition()

    def wait_state(self, states: set[str], after: int, timeout: float) -> Event | None:
        """The first change into one of `states` logged after event `after`, within timeout."""
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            self.tick()
            for e in self.log.events[after:]:
                if e.state and e.state[1] in states:
                    return e
            if self.daemon.proc.poll() is not None:
                raise RuntimeError(f"the daemon exited: {self.daemon.log[-2000:]}")
        return None

    def say(self, text: str, kind: str) -> Said:
        voice = WAKE_VOICES[self.rng.integers(len(WAKE_VOICES))]
        key = (text, *voice)
        if key not in self._voices:
            self._voices[key] = at_level(self.speak(text, *voice), REPLY_DB)
        pcm = self._voices[key]
        loud = np.flatnonzero(np.abs(pcm) > 0.05 * np.abs(pcm).max())
        said = Said(text, kind, f"u{len(self.said)}", int(loud[0]), int(loud[-1]),
                    len(pcm) / RATE)
        self.said.append(said)
        self.mouth.play(pcm, said.item)
        return said

    # -- the script ------------------------------------------------------------------------

    def run(self) -> None:
        if not self.daemon.ready(90):
            raise RuntimeError(f"the daemon did not get ready: {self.daemon.log[-2000:]}")
        self.wait(3.0)  # the streams' start-up
        end = time.monotonic() + 60 * self.args.minutes
        while self.conversations < self.args.conversations and time.monotonic() < end:
            self.conversation()
            self.conversations += 1
            print(f"  soak: {self.conversations} conversations, {len(self.said)} utterances",
                  file=sys.stderr, flush=True)

    def conversation(self) -> None:
        """Silence, a wake command, its replies (a follow-up or a barge-in maybe), idle again."""
        rng = self.rng
        self.wait(rng.uniform(15, 30) if rng.random() < 0.2 else rng.uniform(2, 5))
        self.server.reply_delay_ms = int(rng.integers(*DELAY_MS))
        story = rng.random() < 0.6
        mark = len(self.log.events)
        said = self.say(f"hey jarvis, {STORY if story else TIME}", "wake")
        if self.wait_state({"connecting"}, mark, said.seconds + 4) is None:
            self.wait(said.seconds)
            return
        follow_ups = 0
        for _ in range(6):  # the replies of one conversation
            reply = self.wait_state({"speaking", "idle"}, mark, 40)
            if reply is None or reply.state[1] == "idle":
                break
            mark = len(self.log.events)
            if story and rng.random() < 0.7:  # a spoken barge-in over the long reply
                self.wait(rng.uniform(1.0, 5.0))
                if self.log.state == "speaking":
                    mark = len(self.log.events)
                    self.say(BARGE_INS[rng.integers(len(BARGE_INS))], "barge")
                    story = False
                    continue
            story = False
            after = self.wait_state({"follow_up", "idle", "listening"}, mark, 40)
            if after is None or after.state[1] == "idle":
                break
            mark = len(self.log.events)
            if after.state[1] == "listening":
                continue
            if follow_ups < 2 and rng.random() < 0.4:
                self.wait(rng.uniform(1.0, 4.0))
                if self.log.state == "follow_up":
                    follow_ups += 1
                    story = rng.random() < 0.5
                    mark = len(self.log.events)
                    self.say(STORY if story else TIME, "follow")
                    continue
            break
        self.until(lambda: self.log.state == "idle", 40)
        self.wait(0.5)

    # -- the figures -----------------------------------------------------------------------

    def rows(self) -> list[Row]:
        said, events = [s for s in self.said if s.onset is not None], self.log.events

        def voiced(t: float, before: float = 0.1, after: float = 0.5, text: str = "") -> bool:
            return any(s.during(t, before, after) for s in said if text in s.text)

        def change(first: float, last: float, test) -> Event | None:
            return next((e for e in events if e.state and first <= e.t <= last and test(e.state)),
                        None)

        done = [(t, r) for t, kind, r in self.server_log if kind == "response.done"]
        reason = lambda r: (r.get("status_details") or {}).get("reason")  # noqa: E731
        truncated = {reply.response_id for s in self.server.sessions for reply in s.replies
                     if reply.truncated_ms is not None}
        cut = [(t, r) for t, r in done if r["status"] == "cancelled" and reason(r) == "turn_detected"]
        cut_alone = [t for t, _ in cut if not voiced(t)]
        barged = [r for _, r in done if r["id"] in truncated or
                  (r["status"] == "cancelled" and reason(r) == "client_cancelled")]
        whole = [r for _, r in done if r["status"] == "completed" and r["id"] not in truncated]
        selfish = [e for e in events if e.kind == "voice" and not voiced(e.t, 0.05, 0.3)]
        ghosts = [e for e in events if e.state and e.state[2] == "user spoke again"
                  and not voiced(e.t, 0.1, 1.0)]
        false_wakes = [e for e in events if e.kind == "wake" and not voiced(e.t, 0.1, 1.5, "jarvis")]

        over = [s for s in said if s.kind == "barge" and self.log.state_at(s.onset) == "speaking"]
        latency = {}
        for s in over:
            e = change(s.onset - 0.05, s.end + 1.0, lambda st: st[2].startswith("barge-in"))
            if e is not None:
                latency[s.item] = e.t - s.onset
        quick = [v for v in latency.values() if v <= HONOURED_S]
        jarvis = [s for s in over if "jarvis" in s.text]
        wakes = [s for s in said if s.kind == "wake" and self.log.state_at(s.onset) == "idle"]
        heard = [s for s in wakes if change(s.onset, s.end + 3.0, lambda st: st[1] == "connecting")]
        follows = [s for s in said if s.kind == "follow" and self.log.state_at(s.onset) == "follow_up"]
        followed = [s for s in follows
                    if change(s.onset, s.end + 2.0, lambda st: st[1] == "listening")]
        cpu_idle, cpu_talk, growth = self._costs()
        n, pct = len(done), lambda a, b: f"{100 * a / b:.0f} %" if b else "-"
        problems = [e.text for e in events if e.kind == "warning"]
        return [
            Row("conversations (wake command to idle again)", str(self.conversations), ">= 40",
                self.conversations >= 40),
            Row("replies started / cut by the device / barged in / played whole",
                f"{n} / {len(cut)} / {len(barged)} / {len(whole)}", "cut 0",
                n > 0 and not cut and len(cut) + len(barged) + len(whole) <= n),
            Row("replies cut by the device with no user voice in the sink", str(len(cut_alone)),
                "0", not cut_alone),
            Row("self-interruptions (voice barge-in, no user voice in the sink)", str(len(selfish)),
                "0", not selfish),
            Row("turns the server began with no user voice ('user spoke again')",
                str(len(ghosts)), "0", not ghosts),
            Row(f"spoken barge-ins over a reply honoured within {HONOURED_S * 1000:.0f} ms",
                f"{len(quick)}/{len(over)} ({pct(len(quick), len(over))})", ">= 95 %",
                bool(over) and len(quick) >= 0.95 * len(over)),
            Row("spoken barge-in to the reply cut, ms median (from the voice's onset in the sink)",
                f"{median(list(latency.values())) * 1000:.0f}" if latency else "-", f"<= {HONOURED_S * 1000:.0f}",
                bool(latency) and 0 < median(list(latency.values())) <= HONOURED_S),
            Row("'hey jarvis, stop' over a reply honoured (by voice or wake word)",
                f"{sum(s.item in latency for s in jarvis)}/{len(jarvis)}", "100 %",
                bool(jarvis) and all(s.item in latency for s in jarvis)),
            Row("wake commands heard while idle", f"{len(heard)}/{len(wakes)}", "100 %",
                bool(wakes) and len(heard) == len(wakes)),
            Row("follow-ups heard in the follow-up window", f"{len(followed)}/{len(follows)}", "-",
                None if follows else False),
            Row("false wakes (wake word with no 'hey jarvis' said)", str(len(false_wakes)), "0",
                not false_wakes),
            Row("RSS / fds / threads growth, idle after conversation 2 to idle at the end",
                "impossible" if growth is None else "{:+.1f} MB / {:+d} / {:+d}".format(*growth),
                "<= 2 MB / 0 / 0", growth is not None and growth[0] <= 2 and growth[1:] == (0, 0)),
            Row("CPU s per s, idle (speaker at rest) / in conversation",
                f"{cpu_idle:.4f} / {cpu_talk:.3f}", "idle <= 0.008",
                0 < cpu_idle <= 0.008 and 0 < cpu_talk < CORES),
            Row("warnings and errors in the daemon's log", str(len(problems)), "-", None),
        ]

    def _costs(self) -> tuple[float, float, tuple[float, int, int] | None]:
        """CPU s per s while idle at rest and in conversation; idle growth (RSS MB, fds, threads)."""
        idle, talk = [0.0, 0.0], [0.0, 0.0]
        for a, b in zip(self.samples, self.samples[1:]):
            into = idle if a[1] == b[1] == "idle" and a[2] >= REST_S else \
                talk if "idle" not in (a[1], b[1]) else None
            if into is not None:
                into[0] += b[4] - a[4]
                into[1] += b[0] - a[0]
        rested = [s for s in self.samples if s[1] == "idle" and s[2] >= REST_S and s[3] >= 2]
        growth = None if len(rested) < 2 else ((rested[-1][5] - rested[0][5]) / 1024,
                                               rested[-1][6] - rested[0][6],
                                               rested[-1][7] - rested[0][7])
        rate = lambda x: x[0] / x[1] if x[1] else 0.0  # noqa: E731
        return rate(idle), rate(talk), growth

    def timeline(self) -> str:
        """Every utterance, daemon event and server event in time order, for finding out why."""
        t0 = self.samples[0][0] if self.samples else 0.0
        lines = [(s.onset, f"USER  {s.kind:6} {s.text!r} until {s.end - t0:.3f}" if s.end
                  else f"USER  {s.kind:6} {s.text!r}") for s in self.said if s.onset is not None]
        lines += [(e.t, f"AGENT {e.text}") for e in self.log.events]
        lines += [(t, f"SERVER {kind} {r.get('status', '')} "
                      f"{(r.get('status_details') or {}).get('reason', '')}")
                  for t, kind, r in self.server_log]
        return "\n".join(f"{t - t0:9.3f} {text}" for t, text in sorted(lines, key=lambda x: x[0]))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.soak", description=__doc__.split("\n")[0])
    parser.add_argument("--conversations", type=int, default=40, help="stop after this many (40)")
    parser.add_argument("--minutes", type=float, default=45.0,
                        help="or after this long, whichever comes first (45)")
    parser.add_argument("--seed", type=int, default=19, help="the scripted user's seed (19)")
    parser.add_argument("--keep", type=Path, help="write the daemon's log and a timeline here")
    args = parser.parse_args(argv)
    from agent.devserver import DevServer
    from agent.devserver.script import Script

    # A turn the server's recogniser could not make out gets the story too: every conversation
    # then has a long reply to talk over, whatever the grammar heard through the room.
    script = Script.default()
    script = replace(script, fallback=script.match(STORY).reply)
    with tempfile.TemporaryDirectory(prefix="soak-") as tmp, Room(Path(tmp)) as room, \
            DevServer(api_key=KEY, script=script) as server:
        os.environ.update(room.env)  # this process's PortAudio (the user, the room) in the sink
        soak = Soak(Path(tmp), room, server, args)
        try:
            soak.run()
        finally:
            soak.close()
            if args.keep:
                args.keep.mkdir(parents=True, exist_ok=True)
                shutil.copy(soak.daemon.log_path, args.keep / "daemon.log")
                (args.keep / "timeline.txt").write_text(soak.timeline())
        rows = soak.rows()
    print_table([("soak", row) for row in rows])
    return 0 if all(row.ok is not False for row in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
