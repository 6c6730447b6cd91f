"""Trigger to first frame sent: how long a user waits before their words start leaving the device."""

from __future__ import annotations

import tempfile
import threading
import time
from pathlib import Path

import numpy as np

from agent import config as config_mod
from agent.daemon import Parts, build_conversation
from agent.demo import demo_config, write_wav
from agent.devserver import DevServer
from agent.state import State
from benchmarks.common import Row, median, percentile

ROUNDS = 30
KEY = "sk-bench"


def rows() -> list[Row]:
    from gpiozero import Device
    from gpiozero.pins.mock import MockFactory

    Device.pin_factory = MockFactory()
    with tempfile.TemporaryDirectory() as tmp, DevServer(api_key=KEY) as server:
        folder = Path(tmp)
        write_wav(folder / "you.wav", np.zeros(24000 * 60, np.int16))
        data = demo_config(server.url, folder).settings.model_dump()
        data["wake"]["engine"] = "none"
        data["button"]["pin"] = 17  # on gpiozero's mock pins: something can start a conversation
        data["sounds"]["enabled"] = False
        cfg = config_mod.parse(data, folder / "agent.toml")
        seen: list[tuple[State, float]] = []
        marks = [0]  # where wait_for looks from
        changed = threading.Condition()

        def on_state(state: State, reason: str) -> None:
            with changed:
                seen.append((state, time.perf_counter()))
                changed.notify_all()

        def wait_for(state: State) -> float:
            """When `state` was next shown (it may already have been left: a loopback session
            opens within a millisecond or two)."""
            with changed:
                start = marks[0]
                assert changed.wait_for(lambda: any(s is state for s, _ in seen[start:]), timeout=10), state
                i = next(i for i in range(start, len(seen)) if seen[i][0] is state)
                marks[0] = i + 1
                return seen[i][1]

        parts = Parts()
        conv = build_conversation(cfg, parts, api_key=KEY, on_state=on_state)
        thread = threading.Thread(target=conv.run, daemon=True)
        thread.start()
        wait_for(State.IDLE)
        to_connecting, to_first_frame = [], []
        try:
            for _ in range(ROUNDS):
                t0 = time.perf_counter()
                conv.trigger("button")
                t1 = wait_for(State.CONNECTING)
                t2 = wait_for(State.LISTENING)  # session.created handled; pre-roll sent right after
                to_connecting.append((t1 - t0) * 1000)
                to_first_frame.append((t2 - t0) * 1000)
                conv.post("mute", True)
                wait_for(State.MUTED)
                conv.post("mute", False)
                wait_for(State.IDLE)
        finally:
            conv.stop()
            thread.join(5)
            parts.close()
    connect = [b - a for a, b in zip(to_connecting, to_first_frame)]
    p50 = median(to_first_frame)
    return [
        Row("trigger -> first frame sent, median (loopback server)", f"{p50:.1f} ms", "-", None),
        Row("trigger -> first frame sent, p99 (loopback server)", f"{percentile(to_first_frame, 99):.1f} ms",
            "-", None),
        Row("of which connection (socket + session.created), median", f"{median(connect):.1f} ms", "-", None),
        Row("trigger -> connecting (loop reaction), median", f"{median(to_connecting):.2f} ms", "-", None),
    ]
