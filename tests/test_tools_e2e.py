"""End to end: spoken phrases make the local Mira server call tools; the daemon runs them for real.

Each test speaks a phrase with espeak-ng into the file microphone, the devserver's script maps the
recognised phrase to function calls, and the conversation runs the local action (MockFactory GPIO
pins, a real program, a real HTTP request on 127.0.0.1, the timers) and sends the output back.
"""

import functools
import http.server
import json
import sys
import threading
import time

import numpy as np
import pytest
from gpiozero import Device
from gpiozero.pins.mock import MockFactory, MockPWMPin

from agent.audio.base import SAMPLE_RATE
from agent.audio.wavfile import read_wav
from agent.demo import speak
from agent.devserver import DevServer
from agent.devserver.script import Call, Entry, Script
from agent.state import State
from harness import KEY, Run, check_all_events

pytestmark = pytest.mark.slow

PY = sys.executable
# Appends its arguments (after the log path) to the log as one JSON line, then prints a line.
RECORD_ARGV = ("import json,sys; f=open(sys.argv[1],'a'); f.write(json.dumps(sys.argv[2:])+chr(10)); "
               "f.close(); print('got', len(sys.argv)-2)")


@functools.cache
def _said(text: str) -> np.ndarray:
    return speak(text)


def voice(*turns: tuple[float, str], trailing_s: float = 1.0) -> np.ndarray:
    """The microphone: (silence before, phrase) pairs spoken by espeak-ng, then trailing silence."""
    parts = []
    for pause, text in turns:
        parts += [np.zeros(int(pause * SAMPLE_RATE), np.int16), _said(text)]
    parts.append(np.zeros(int(trailing_s * SAMPLE_RATE), np.int16))
    return np.concatenate(parts)


def script(*entries: Entry, tool_reply: str = "Done.") -> Script:
    return Script(tuple(entries), fallback="Sorry.", tool_reply=tool_reply)


def tool(name: str, action: dict, properties: dict | None = None, required=None, **extra) -> dict:
    params = {"type": "object", "properties": properties or {}}
    params["required"] = list(properties or {}) if required is None else required
    return {"name": name, "description": f"The {name} tool.", "parameters": params,
            "action": action, **extra}


def recorder_tool(name: str, log_path, properties: dict, argv_tail: list[str], **action) -> dict:
    """A command tool running python -c RECORD_ARGV: what the program received lands in log_path."""
    return tool(name, {"kind": "command", "argv": [PY, "-c", RECORD_ARGV, str(log_path), *argv_tail],
                       **action}, properties)


def calls_made(session) -> list[dict]:
    """The function calls the server sent: call_id, name, arguments, in order."""
    return [{"call_id": e["call_id"], "arguments": e["arguments"]}
            for e in session.events("response.function_call_arguments.done")]


def outputs(session) -> list[tuple[str, str]]:
    """(call_id, output) of every function_call_output the server received, in order."""
    return [(o["call_id"], o["output"]) for o in session.function_outputs]


def lines(path) -> list:
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def played_all_replies(tmp_path, session) -> bool:
    """The speaker's file holds exactly the reply audio the server sent (volume 100)."""
    sent = np.concatenate([np.frombuffer(bytes(r.audio), "<i2") for r in session.replies])
    return np.array_equal(read_wav(tmp_path / "reply.wav"), sent)


@pytest.fixture
def server():
    with DevServer(api_key=KEY) as s:
        yield s


@pytest.fixture
def pins():
    """gpiozero's default pin factory is a MockFactory of PWM-capable pins for the test."""
    before = Device.pin_factory
    factory = MockFactory(pin_class=MockPWMPin)
    Device.pin_factory = factory
    yield factory
    factory.reset()
    factory.close()
    Device.pin_factory = before


# -- the three action kinds ------------------------------------------------------------------

def test_spoken_phrase_switches_a_gpio_pin_and_the_reply_is_played(tmp_path, server, pins):
    """"Turn on the light" -> set_light(on=true) drives BCM 17 high; the output and the reply round-trip."""
    server.script = script(Entry("turn on the light", calls=(Call("set_light", {"on": True}),)),
                           tool_reply="The light is on.")
    lamp = tool("set_light", {"kind": "gpio", "pin": 17, "operation": "set", "value_arg": "on"},
                {"on": {"type": "boolean"}})
    assert not pins.pin(17).state
    with Run(tmp_path, server, voice((0.3, "Turn on the light.")), tools=[lamp]) as run:
        server.recorder.wait_for(lambda: server.last_session and server.last_session.function_outputs,
                                 timeout=15)
        assert pins.pin(17).function == "output" and pins.pin(17).state == 1
        run.join()
    assert run.code == 0
    session = server.last_session
    assert session.transcripts == ["turn on the light"]
    assert pins.pin(17).function == "input"  # the daemon released the pin when it stopped
    (call,) = calls_made(session)
    assert outputs(session) == [(call["call_id"], json.dumps({"pin": 17, "on": True}))]
    assert session.reply_texts == ["The light is on."]
    assert played_all_replies(tmp_path, session) and len(session.replies[0].audio) > SAMPLE_RATE // 2
    check_all_events(session)


def test_command_tool_output_reaches_the_model(tmp_path, server):
    """A command tool runs its program with the argument in its argv element; stdout is the output."""
    server.script = script(Entry("open the door", calls=(Call("open_door", {"door": "front"}),)))
    door = tool("open_door", {"kind": "command", "argv": [PY, "-c", "import sys; print('opened', sys.argv[1])",
                                                          "{door}"]},
                {"door": {"type": "string", "enum": ["front", "back"]}})
    with Run(tmp_path, server, voice((0.3, "Open the door.")), tools=[door]) as run:
        run.join()
    session = server.last_session
    assert session.transcripts == ["open the door"]
    (call,) = calls_made(session)
    assert outputs(session) == [(call["call_id"], "opened front")]
    assert session.reply_texts == ["Done."] and played_all_replies(tmp_path, session)
    check_all_events(session)


class _Hub(http.server.BaseHTTPRequestHandler):
    """A Home Assistant-like service endpoint on 127.0.0.1 that records what it was sent."""

    received: list[dict] = []

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self.received.append({"path": self.path, "headers": dict(self.headers), "body": body})
        answer = json.dumps([{"entity_id": "light.kitchen", "state": "on"}]).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)

    def log_message(self, *args):
        pass


@pytest.fixture
def hub():
    class Handler(_Hub):
        received = []
    with http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler) as httpd:
        thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        thread.start()
        yield httpd, Handler.received
        httpd.shutdown()
        thread.join(5)


def test_http_tool_posts_the_arguments_as_json_to_a_local_server(tmp_path, server, hub):
    """An http tool POSTs the call's arguments as the JSON body with the secret header; the body answers."""
    httpd, received = hub
    token = tmp_path / "ha-token"
    token.write_text("tok-123\n")
    token.chmod(0o600)
    server.script = script(Entry("turn on the light",
                                 calls=(Call("kitchen_light", {"entity_id": "light.kitchen"}),)))
    ha = tool("kitchen_light", {"kind": "http", "method": "POST",
                                "url": f"http://127.0.0.1:{httpd.server_port}/api/services/light/turn_on",
                                "headers": {"Authorization": "Bearer {secret}"},
                                "header_secret_files": {"Authorization": str(token)}},
              {"entity_id": {"type": "string"}})
    with Run(tmp_path, server, voice((0.3, "Turn on the light.")), tools=[ha]) as run:
        run.join()
    session = server.last_session
    (request,) = received
    assert request["path"] == "/api/services/light/turn_on"
    assert json.loads(request["body"]) == {"entity_id": "light.kitchen"}
    assert request["headers"]["Content-Type"] == "application/json"
    assert request["headers"]["Authorization"] == "Bearer tok-123"
    (call,) = calls_made(session)
    assert outputs(session) == [(call["call_id"], '[{"entity_id": "light.kitchen", "state": "on"}]')]
    assert "tok-123" not in json.dumps(session.client_events)  # the token went to the hub only
    assert session.reply_texts == ["Done."] and played_all_replies(tmp_path, session)


def test_several_calls_in_one_response_run_in_order_each_with_its_output(tmp_path, server):
    """Three calls in one response run one after another, and each call_id gets its own output, in order."""
    log = tmp_path / "steps.jsonl"
    server.script = script(Entry("open the door", calls=tuple(
        Call("step", {"n": n}) for n in ("one", "two", "three"))))
    step = recorder_tool("step", log, {"n": {"type": "string"}}, ["{n}"])
    with Run(tmp_path, server, voice((0.3, "Open the door.")), tools=[step]) as run:
        run.join()
    session = server.last_session
    assert lines(log) == [["one"], ["two"], ["three"]]
    calls = calls_made(session)
    assert [json.loads(c["arguments"])["n"] for c in calls] == ["one", "two", "three"]
    assert outputs(session) == [(c["call_id"], "got 1") for c in calls]
    # One response.create after the three outputs, answered with one reply per result (the one
    # before them asked for the reply to the user's turn: the device starts every reply).
    creates = [i for i, e in enumerate(session.client_events) if e.get("type") == "response.create"]
    items = [i for i, e in enumerate(session.client_events) if e.get("type") == "conversation.item.create"]
    after_outputs = [i for i in creates if i > items[0]]
    assert len(items) == 3 and len(after_outputs) == 1 and after_outputs[0] > items[-1]
    assert session.reply_texts == ["Done. Done. Done."]
    check_all_events(session)


# -- failures the model hears about ----------------------------------------------------------

def test_failing_invalid_slow_and_unknown_calls_become_error_outputs_and_the_next_turn_works(
        tmp_path, server):
    """A failing program, invalid arguments, a timeout and an unknown name each get an error output;
    the invalid call never ran, the daemon lives on and answers the next spoken turn."""
    ran = tmp_path / "door-ran.jsonl"
    server.script = script(
        Entry("open the door", calls=(
            Call("jammed", {}),
            Call("open_door", {"door": 5}),           # the schema wants a string
            Call("slow", {}),
            Call("launch_rocket", {"to": "mars"}),
        )),
        Entry("hello", reply="Hello again."),
        tool_reply="{name}")  # short: the user's next turn comes after the reply
    tools = [
        tool("jammed", {"kind": "command", "argv": [PY, "-c", "import sys; sys.exit('the door is jammed')"]}),
        recorder_tool("open_door", ran, {"door": {"type": "string"}}, ["{door}"]),
        tool("slow", {"kind": "command", "argv": [PY, "-c", "import time; time.sleep(30)"], "timeout_s": 0.5}),
    ]
    pcm = voice((0.3, "Open the door."), (5.0, "Hello."))
    with Run(tmp_path, server, pcm, tools=tools) as run:
        run.join()
    assert run.code == 0
    session = server.last_session
    assert session.transcripts == ["open the door", "hello"]
    calls = calls_made(session)
    outs = outputs(session)
    assert [c for c, _ in outs] == [c["call_id"] for c in calls]
    errors = [json.loads(o)["error"] for _, o in outs]
    assert "exited with status 1" in errors[0] and "the door is jammed" in errors[0]
    assert errors[1].startswith("invalid arguments at door") and "'string'" in errors[1]
    assert "timed out after 0.5 s" in errors[2]
    assert "no tool named 'launch_rocket'" in errors[3]
    assert not ran.exists()  # the call with invalid arguments never started its program
    # The model got the errors and spoke about them, then answered the next turn.
    assert session.reply_texts[0] == "jammed open_door slow launch_rocket"
    assert session.reply_texts[1] == "Hello again."
    assert played_all_replies(tmp_path, session)
    assert run.states.count(State.THINKING) >= 2 and run.states[-1] is State.IDLE
    check_all_events(session)


def test_hostile_arguments_reach_the_program_inert_or_are_refused(tmp_path, server):
    """Shell syntax, $(...), ../ and long strings arrive as one literal argv element; wrong types,
    option-like values, refused paths and oversize arguments never start the program."""
    log = tmp_path / "argv.jsonl"
    canary = tmp_path / "pwned"
    long_text = "A" * 10000
    inert = [
        f"; touch {canary} && echo x | tee {canary}",
        f"$(touch {canary}) `touch {canary}` ${{HOME}}",
        "../../../etc/passwd",
        "a b\tc\nd 'e' \"f\" \\ * ? ~ > < {door}",
        long_text,
    ]
    refused = [
        ("note", {"text": ["two", "elements"]}, "invalid arguments at text"),     # wrong type
        ("note", {"text": "x", "extra": "y"}, "invalid arguments"),                # undeclared field
        ("note", {"text": "-rf"}, "would be read as an option"),
        ("save", {"name": "../../etc/cron.d/evil"}, "invalid arguments at name"),  # path pattern
        ("note", {"text": "B" * 40000}, "the arguments are"),                      # oversize
    ]
    server.script = script(Entry("open the door", calls=(
        *(Call("note", {"text": t}) for t in inert),
        *(Call(name, args) for name, args, _ in refused),
    )), tool_reply="ok")
    note = recorder_tool("note", log, {"text": {"type": "string"}}, ["{text}", "notes/{text}.txt"])
    save = tool("save", {"kind": "command", "argv": [PY, "-c", RECORD_ARGV, str(log), "notes/{name}"]},
                {"name": {"type": "string", "pattern": "^[a-z0-9_-]{1,32}$"}})
    with Run(tmp_path, server, voice((0.3, "Open the door."), trailing_s=1.5), tools=[note, save]) as run:
        run.join()
    session = server.last_session
    assert session.transcripts == ["open the door"]
    # What each program received: exactly the text, as one element (plus the templated one).
    assert lines(log) == [[t, f"notes/{t}.txt"] for t in inert]
    assert not canary.exists()
    outs = [o for _, o in outputs(session)]
    assert len(outs) == len(inert) + len(refused)
    assert outs[:len(inert)] == ["got 2"] * len(inert)
    for out, (_, _, why) in zip(outs[len(inert):], refused):
        assert why in json.loads(out)["error"]
    check_all_events(session)


# -- timers ----------------------------------------------------------------------------------

class Lights:
    """The LED ring's interface as the conversation uses it (show a state, ring), recording calls."""

    def __init__(self, conversation):
        self.conversation = conversation
        self.calls: list[tuple] = []

    def show(self, state):
        self.calls.append(("show", state))

    def ring(self):
        # Called on the conversation's thread: its session state is safe to read here.
        self.calls.append(("ring", self.conversation.state, self.conversation.conn is None))


def test_timer_rings_after_the_session_closed_and_a_press_only_stops_it(tmp_path, server):
    """A timer set by voice rings (earcon, LEDs) with no session open; a press silences it, opening nothing."""
    server.script = script(Entry("set a timer", calls=(
        Call("timer", {"action": "set", "seconds": 3, "label": "tea"}),)))
    tone = (np.sin(np.arange(SAMPLE_RATE // 5) * 2 * np.pi * 880 / SAMPLE_RATE) * 8000).astype(np.int16)
    run = Run(tmp_path, server, voice((0.3, "Set a timer."), trailing_s=0.8),
              daemon={"exit_when_done": False})
    lights = run.conversation.lights = Lights(run.conversation)
    run.conversation.earcons = {"timer": tone, "ring": tone}  # named "ring" in agent/sounds
    with run:
        deadline = time.monotonic() + 8
        while not any(c[0] == "ring" for c in lights.calls):
            assert time.monotonic() < deadline, f"the timer never rang; states {run.states}"
            time.sleep(0.01)
        session = server.last_session
        (ring,) = [c for c in lights.calls if c[0] == "ring"]
        assert ring[1:] == (State.IDLE, True)  # it rang with the session already closed
        assert session.closed
        assert [t.label for t in run.conversation.timers.ringing()] == ["tea"]
        time.sleep(0.4)  # the earcon plays in real time
        states_before = len(run.states)
        run.conversation.on_button("pressed")
        deadline = time.monotonic() + 3
        while run.conversation.timers.ringing() or lights.calls[-1][0] != "show":
            assert time.monotonic() < deadline, "the press did not stop the ringing"
            time.sleep(0.01)
        time.sleep(0.5)
        assert run.states[states_before:] == []  # no CONNECTING: the press only answered the timer
        assert len(server.sessions) == 1 and run.conversation.counters["sessions"] == 1
        assert lights.calls[-1] == ("show", State.IDLE)
        run.conversation.stop()
        run.join(10)
    (call,) = calls_made(session)
    (output,) = outputs(session)
    assert output[0] == call["call_id"]
    assert json.loads(output[1])["label"] == "tea" and json.loads(output[1])["seconds"] == 3
    # The speaker played the reply, then the timer's earcon, exactly.
    reply = np.frombuffer(bytes(session.replies[0].audio), "<i2")
    played = read_wav(tmp_path / "reply.wav")
    assert np.array_equal(played[:len(reply) + len(tone)], np.concatenate([reply, tone]))


# -- what the LEDs show -----------------------------------------------------------------------

def test_state_is_thinking_while_a_tool_runs(tmp_path, server):
    """While a slow tool runs the conversation shows THINKING; the reply follows only after its output."""
    started = tmp_path / "started"
    server.script = script(Entry("open the door", calls=(Call("slow_door", {}),)))
    slow = tool("slow_door", {"kind": "command", "argv": [
        PY, "-c", f"import time; open({str(started)!r}, 'w').close(); time.sleep(1.5); print('open')"]})
    with Run(tmp_path, server, voice((0.3, "Open the door.")), tools=[slow]) as run:
        deadline = time.monotonic() + 15
        while not started.exists():
            assert time.monotonic() < deadline, f"the tool never started; states {run.states}"
            time.sleep(0.01)
        for _ in range(5):  # throughout the run, not just at its start
            assert run.conversation.state is State.THINKING and run.states[-1] is State.THINKING
            assert server.last_session.function_outputs == []
            time.sleep(0.2)
        run.join()
    session = server.last_session
    assert [o for _, o in outputs(session)] == ["open"]
    i = len(run.states) - 1 - run.states[::-1].index(State.THINKING)
    assert run.states[i:i + 2] == [State.THINKING, State.SPEAKING]
    assert session.reply_texts == ["Done."]


# -- a connection lost while a tool runs -----------------------------------------------------

# Opens "the door" (a line in the log), waits for the test's go-ahead file, marks itself done.
DOOR = """import os, sys, time
log, go, done = sys.argv[1:4]
open(log, 'a').write('[]' + chr(10))
start = time.monotonic()
while not os.path.exists(go) and time.monotonic() - start < 8:
    time.sleep(0.02)
open(done, 'w').close()
print('opened')
"""


def _wait(predicate, what: str, timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting until {what}"
        time.sleep(0.01)


@pytest.mark.parametrize("finished", ["after the reconnect", "while reconnecting"])
def test_a_drop_while_a_tool_runs_runs_the_action_once_and_the_output_still_reaches_the_model(
        tmp_path, server, finished):
    """The socket dies mid-call: the action is not run again after the reconnect, no stale call_id is
    sent, and the new session gets the call and its output and speaks about it."""
    log, go, done = tmp_path / "door.jsonl", tmp_path / "go", tmp_path / "done"
    server.script = script(Entry("open the door", calls=(Call("open_door", {}),)))
    door = tool("open_door", {"kind": "command", "argv": [PY, "-c", DOOR, str(log), str(go), str(done)]})
    with Run(tmp_path, server, voice((0.3, "Open the door.")), tools=[door]) as run:
        _wait(log.exists, "the tool started")
        if finished == "while reconnecting":
            server.faults.refuse_status = 503  # the server is down for a while
        assert server.abort_connections() == 1
        _wait(lambda: State.RECONNECTING in run.states, "the daemon noticed the drop")
        if finished == "after the reconnect":
            _wait(lambda: len(server.sessions) == 2 and run.conversation.ledger is not None
                  and run.conversation.ledger.ready_at is not None, "the daemon reconnected")
        go.touch()
        _wait(done.exists, "the tool finished")
        time.sleep(0.2)  # the outcome reaches the conversation while it is still reconnecting
        server.faults.refuse_status = None
        run.join(30)
    assert run.code == 0
    first, *rest = [s for s in server.sessions if s.server_events]  # refused upgrades have none
    (call,) = calls_made(first)
    assert lines(log) == [[]]  # the door opened once, not once per session
    assert [e["error"]["message"] for s in server.sessions for e in s.events("error")] == []
    assert len(rest) == 1 and outputs(rest[0]) == [(call["call_id"], "opened")]
    assert rest[0].reply_texts == ["Done."]
    check_all_events(rest[0])
