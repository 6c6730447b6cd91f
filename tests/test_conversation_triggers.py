"""Buttons, mute, LEDs and the follow-up window, through the whole daemon on mock GPIO pins."""

import time

import pytest

from agent.audio.wavfile import read_wav
from agent.demo import user_audio
from agent.devserver import DevServer
from agent.state import State
from harness import KEY, Run, check_all_events

pytestmark = pytest.mark.slow
BUTTON, MUTE = 17, 27
LEDS = {"listening": 5, "speaking": 6, "error": 13}


@pytest.fixture
def server():
    with DevServer(api_key=KEY) as s:
        yield s


def _wait(predicate, timeout=15.0, what="condition"):
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.01)


def _hold(run_, pins, seconds):
    pins.pin(BUTTON).drive_low()
    time.sleep(seconds)
    pins.pin(BUTTON).drive_high()


def test_hold_to_talk_commits_on_release(tmp_path, pins, server):
    """Hold mode: the press opens a session with server VAD off; the release commits and asks for a reply."""
    pcm = user_audio([(1.0, "What time is it?")], trailing_s=5.0)
    with Run(tmp_path, server, pcm, trigger_on_start=False, wake={"engine": "none"},
             button={"pin": BUTTON, "mode": "hold", "bounce_ms": 0, "long_press_s": 5.0}) as run:
        time.sleep(0.8)
        _hold(run, pins, 2.2)
        run.join()
    session = server.last_session
    update = next(e for e in session.client_events if e.get("type") == "session.update")
    assert update["session"]["turn_detection"] is None
    kinds = [e.get("type") for e in session.client_events]
    assert kinds.index("input_audio_buffer.commit") < kinds.index("response.create")
    assert session.transcripts == ["what time is it"]
    assert run.states[:5] == [State.IDLE, State.CONNECTING, State.LISTENING, State.THINKING, State.SPEAKING]
    assert len(read_wav(tmp_path / "reply.wav")) > 24000
    check_all_events(session)


def test_tap_mode_press_includes_the_preroll(tmp_path, pins, server):
    """Tap mode: a press a moment into the phrase still sends its start (the pre-roll); server VAD ends the turn."""
    pcm = user_audio([(0.5, "What time is it?")], trailing_s=4.0)
    with Run(tmp_path, server, pcm, trigger_on_start=False, wake={"engine": "none"},
             button={"pin": BUTTON, "mode": "tap", "bounce_ms": 0}) as run:
        time.sleep(0.75)  # 250 ms into the phrase
        pins.pin(BUTTON).drive_low()
        pins.pin(BUTTON).drive_high()
        run.join()
    assert server.last_session.transcripts == ["what time is it"]
    update = next(e for e in server.last_session.client_events if e.get("type") == "session.update")
    assert update["session"]["turn_detection"]["type"] == "server_vad"


def test_long_press_mutes_and_nothing_leaves_the_device(tmp_path, pins, server):
    """A long press mutes: the session closes, no audio is sent, no wake word runs, until unmuted."""
    pcm = user_audio([(0.3, "Hey Jarvis, what time is it?")], trailing_s=2.0)
    with Run(tmp_path, server, pcm, trigger_on_start=False,
             button={"pin": BUTTON, "mode": "tap", "bounce_ms": 0, "long_press_s": 0.1}) as run:
        pins.pin(BUTTON).drive_low()
        _wait(lambda: State.MUTED in run.states, what="MUTED")
        pins.pin(BUTTON).drive_high()
        run.join()
    assert State.MUTED in run.states and State.LISTENING not in run.states[run.states.index(State.MUTED):]
    assert run.conversation.last_detection is None  # the wake word was said while muted
    # Only the moment before the long press was recognised (pre-roll + 0.1 s) left the device.
    assert sum(len(s.input_audio) for s in server.sessions) / 2 / 24000 < 0.8
    assert all(not s.transcripts for s in server.sessions)


def test_mute_switch_blocks_the_wake_word(tmp_path, pins, server):
    """A closed mute switch at start means MUTED: the wake word said then opens nothing."""
    pcm = user_audio([(0.3, "Hey Jarvis, what time is it?")], trailing_s=1.0)
    run = Run(tmp_path, server, pcm, trigger_on_start=False, button={"mute_pin": MUTE, "bounce_ms": 0})
    pins.pin(MUTE).drive_low()  # the switch is closed before the loop starts
    with run:
        run.join()
    assert State.MUTED in run.states and State.CONNECTING not in run.states
    assert server.sessions == []


def test_press_while_speaking_interrupts(tmp_path, pins, server):
    """A press while the assistant speaks is a barge-in: playback stops and the item is truncated."""
    pcm = user_audio([(0.3, "Tell me a story.")], trailing_s=5.0)
    with Run(tmp_path, server, pcm, button={"pin": BUTTON, "bounce_ms": 0}) as run:
        run.wait_state(State.SPEAKING)
        time.sleep(0.5)
        pins.pin(BUTTON).drive_low()
        pins.pin(BUTTON).drive_high()
        run.join()
    assert run.conversation.counters["barge_ins"] == 1
    assert any(e.get("type") == "conversation.item.truncate" for e in server.last_session.client_events)


def test_leds_follow_the_conversation(tmp_path, pins, server):
    """Single LEDs: listening lights its LED, speaking pulses its LED, idle turns all off."""
    pcm = user_audio([(0.3, "Hello.")], trailing_s=3.0)
    with Run(tmp_path, server, pcm, leds={"kind": "single", "pins": LEDS}) as run:
        run.wait_state(State.LISTENING)
        _wait(lambda: pins.pin(LEDS["listening"]).state == 1, what="listening LED on")
        run.wait_state(State.SPEAKING)
        time.sleep(0.3)
        run.join()
    speaking = [v for _, v in pins.pin(LEDS["speaking"]).states]
    assert any(0 < v < 1 for v in speaking), "speaking should pulse (PWM levels between off and on)"
    assert all(pins.pin(p).state == 0 for p in LEDS.values())


def test_follow_up_window_closes_an_idle_session(tmp_path, server):
    """After a reply, silence for follow_up_s closes the socket (connection time is billed)."""
    pcm = user_audio([(0.3, "Hello.")], trailing_s=6.0)
    with Run(tmp_path, server, pcm, session={"follow_up_s": 1.0}) as run:
        run.wait_state(State.FOLLOW_UP)
        t0 = time.monotonic()
        _wait(lambda: run.conversation.state is State.IDLE, timeout=5, what="IDLE")
        waited = time.monotonic() - t0
        _wait(lambda: server.last_session.closed, timeout=5, what="socket closed")
        run.join()
    assert 0.8 < waited < 2.0
    assert server.last_session.close_code == 1000


def test_lost_audio_device_shows_error_and_recovers(tmp_path, server):
    """A lost device ends the session into ERROR (no exit), ignores triggers, and returns to IDLE when back."""
    pcm = user_audio([(0.3, "Hello.")], trailing_s=4.0)
    with Run(tmp_path, server, pcm, session={"follow_up_s": 30.0}) as run:
        run.wait_state(State.LISTENING)
        run.conversation.post("device", False, "microphone 'USB Mic' was lost; reopening it")
        _wait(lambda: run.conversation.state is State.ERROR, what="ERROR")
        _wait(lambda: server.last_session.closed, what="session closed")
        run.conversation.trigger("button")
        time.sleep(0.2)
        assert run.conversation.state is State.ERROR and len(server.sessions) == 1
        run.conversation.post("device", True, "microphone 'USB Mic' is back")
        _wait(lambda: run.conversation.state is State.IDLE, what="IDLE")
        run.join()
    assert run.code == 0


def test_reload_moves_leds_and_button_to_new_pins(tmp_path, pins, server):
    """SIGHUP's reload closes the old LEDs and button and opens the configured new pins in the loop."""
    from agent import config as config_mod
    from agent.daemon import rebuild_parts

    pcm = user_audio([(3.0, "Hello.")], trailing_s=3.0)
    with Run(tmp_path, server, pcm, trigger_on_start=False, wake={"engine": "none"},
             leds={"kind": "single", "pins": {"listening": 5}}, button={"pin": BUTTON, "bounce_ms": 0}) as run:
        data = run.config.settings.model_dump()
        data["leds"]["pins"] = {"listening": 12}
        data["button"]["pin"] = 22
        new = config_mod.parse(data, run.config.path)
        run.conversation.post("reload", new, rebuild_parts(run.config, new, run.parts, run.conversation.on_button))
        _wait(lambda: run.conversation.config is new, what="reload")
        pins.pin(BUTTON).drive_low()          # the old button is gone: nothing happens
        pins.pin(BUTTON).drive_high()
        time.sleep(0.3)
        assert run.conversation.state is State.IDLE
        pins.pin(22).drive_low()              # the new one starts a turn
        pins.pin(22).drive_high()
        run.wait_state(State.LISTENING)
        _wait(lambda: pins.pin(12).state == 1, what="new listening LED on")
        assert pins.pin(5).state == 0
        run.join()
