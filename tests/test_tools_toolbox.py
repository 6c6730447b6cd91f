"""The toolbox: declarations for session.update, the built-ins, and run() that never raises."""

import json
import logging
import queue
import sys
import time

import pytest

from agent.config import parse
from agent.tools.settings import ToolSettings
from agent.tools.timers import Timers
from agent.tools.toolbox import Toolbox, ToolResult
from conformance import check_client_event


class Speaker:
    """The daemon's side of DeviceControls: records what the tools asked for."""

    def __init__(self, volume: int = 50):
        self.volume = volume
        self.muted = False
        self.ended = 0
        self.rang: queue.Queue = queue.Queue()
        self.timers = Timers(self.rang.put, ring_s=5)

    def get_volume(self) -> int:
        return self.volume

    def set_volume(self, percent: int) -> None:
        self.volume = percent

    def set_muted(self, muted: bool) -> None:
        self.muted = muted

    def end_conversation(self) -> None:
        self.ended += 1


@pytest.fixture
def speaker():
    s = Speaker()
    yield s
    s.timers.close()


def toolbox(speaker, tools=(), **kw) -> Toolbox:
    config = parse({"tools": list(tools)})
    return Toolbox(config.settings.tools, speaker, config.resolve, **kw)


def output(result: ToolResult) -> dict:
    assert isinstance(result, ToolResult)
    return json.loads(result.output)


ECHO = {"name": "echo", "description": "Say it back.", "loggable": False,
        "parameters": {"type": "object", "required": ["text"], "properties": {"text": {"type": "string"}}},
        "action": {"kind": "command", "argv": ["/bin/echo", "{text}"]}}


def test_declarations_are_valid_session_update_tools(speaker):
    """declarations() is the tools list of a session.update the openai models accept."""
    tb = toolbox(speaker, [ECHO])
    tools = tb.declarations()
    check_client_event({"type": "session.update", "session": {"tools": tools, "tool_choice": "auto"}})
    assert [t["name"] for t in tools] == ["get_time", "volume", "mute", "end_conversation", "timer", "echo"]
    echo = tools[-1]
    assert echo == {"type": "function", "name": "echo", "description": "Say it back.",
                    "parameters": {**ECHO["parameters"], "additionalProperties": False}}


def test_builtins_can_be_turned_off_renamed_or_replaced(speaker):
    """builtins=() offers none; a builtin action renames one; a same-named tool replaces one."""
    assert toolbox(speaker, [ECHO], builtins=()).names == ["echo"]
    renamed = {"name": "what_time", "action": {"kind": "builtin", "name": "time"}}
    replaced = {**ECHO, "name": "volume"}
    tb = toolbox(speaker, [renamed, replaced], builtins=("time", "volume", "mute"))
    assert tb.names == ["mute", "what_time", "volume"]
    what_time = tb.declarations()[1]
    assert what_time["description"].startswith("Current local time")
    assert "time" in output(tb.run("what_time", "{}"))
    assert tb.run("volume", '{"text": "loud"}').output == "loud"


def test_get_time_uses_the_local_time_zone(speaker, monkeypatch):
    """get_time reports the local time zone's time, offset and date."""
    monkeypatch.setenv("TZ", "Asia/Kolkata")
    time.tzset()
    try:
        got = output(toolbox(speaker).run("get_time", ""))
    finally:
        monkeypatch.undo()
        time.tzset()
    assert got["utc_offset"] == "+05:30" and got["timezone"] == "IST"
    assert got["iso"].endswith("+05:30") and len(got["time"]) == 5


def test_volume_get_set_up_down_clamped(speaker):
    """volume: get, set, up and down by a step, clamped to 0..100; set needs a level."""
    tb = toolbox(speaker)
    assert output(tb.run("volume", '{"action": "get"}')) == {"volume": 50}
    assert output(tb.run("volume", '{"action": "up"}')) == {"volume": 60}
    assert output(tb.run("volume", '{"action": "down", "step": 25}')) == {"volume": 35}
    assert output(tb.run("volume", '{"action": "set", "level": 95}')) == {"volume": 95}
    assert output(tb.run("volume", '{"action": "up", "step": 50}')) == {"volume": 100}
    assert speaker.volume == 100
    assert "needs level" in output(tb.run("volume", '{"action": "set"}'))["error"]
    assert "maximum of 100" in output(tb.run("volume", '{"action": "set", "level": 150}'))["error"]
    assert speaker.volume == 100


def test_mute_and_end_conversation_reach_the_device(speaker):
    """mute sets the microphone state; end_conversation asks the daemon to close after the reply."""
    tb = toolbox(speaker)
    assert output(tb.run("mute", '{"muted": true}')) == {"muted": True} and speaker.muted
    assert output(tb.run("end_conversation", "{}"))["ok"] is True and speaker.ended == 1
    assert not tb.run("mute", '{"muted": "yes"}').ok and speaker.muted is True


def test_timer_tool_sets_lists_cancels_and_rings(speaker):
    """timer set rings through the daemon's callback; list and cancel by label or id work."""
    tb = toolbox(speaker)
    pasta = output(tb.run("timer", '{"action": "set", "seconds": 600, "label": "pasta"}'))
    tea = output(tb.run("timer", '{"action": "set", "seconds": 1, "label": "tea"}'))
    assert pasta["label"] == "pasta" and pasta["seconds"] == 600 and len(pasta["rings_at"]) == 8
    listed = output(tb.run("timer", '{"action": "list"}'))
    assert [t["label"] for t in listed["timers"]] == ["tea", "pasta"]
    assert "several timers" in output(tb.run("timer", '{"action": "cancel"}'))["error"]
    assert output(tb.run("timer", '{"action": "cancel", "label": "Pasta"}')) == {
        "cancelled": {"id": pasta["id"], "label": "pasta"}}
    assert speaker.rang.get(timeout=3).id == tea["id"]
    assert output(tb.run("timer", '{"action": "list"}'))["ringing"] == [{"id": tea["id"], "label": "tea"}]
    assert output(tb.run("timer", '{"action": "cancel"}'))["cancelled"]["label"] == "tea"
    assert speaker.timers.ringing() == []
    assert "no such timer" in output(tb.run("timer", f'{{"action": "cancel", "id": {pasta["id"]}}}'))["error"]
    assert "needs seconds" in output(tb.run("timer", '{"action": "set"}'))["error"]


@pytest.mark.parametrize("arguments, says", [
    ("{bad json", "not valid JSON"),
    ('{"text": NaN}', "not valid JSON"),
    ('{"text": Infinity}', "not valid JSON"),
    ("[" * 20000 + "]" * 20000, "limit"),
    ('["hi"]', "must be a JSON object"),
    ('"hi"', "must be a JSON object"),
    ('{"text": "hi", "rm": "-rf"}', "Additional properties are not allowed ('rm'"),
    ('{"text": 5}', "5 is not of type 'string'"),
    ('{"text": null}', "None is not of type 'string'"),
    ('{"text": {"$(id)": 1}}', "is not of type 'string'"),
    ("", "'text' is a required property"),
])
def test_bad_arguments_are_error_outputs(speaker, arguments, says):
    """Malformed or invalid arguments give {"error": ...} naming the problem; nothing runs."""
    result = toolbox(speaker, [ECHO]).run("echo", arguments)
    assert not result.ok and says in output(result)["error"]


def test_deep_nesting_under_the_size_limit_is_an_error_output(speaker):
    """5000 nested arrays are refused as an error output on every Python (3.11's json gives up on
    the depth, 3.13's parses it and the object check refuses it)."""
    result = toolbox(speaker, [ECHO]).run("echo", "[" * 5000 + "]" * 5000)
    assert not result.ok
    assert output(result)["error"].startswith(("the arguments are not valid JSON",
                                               "the arguments must be a JSON object"))


def test_unknown_tool_lists_the_real_ones(speaker):
    """A tool name that is not declared is refused with the list of tools; nothing runs."""
    result = toolbox(speaker, [ECHO], builtins=()).run("rm_rf\nINFO fake log line", "{}")
    assert not result.ok and output(result)["error"].endswith("the tools are echo")


def test_a_failing_device_is_an_error_output_not_an_exception(speaker, caplog):
    """An unexpected exception inside an action becomes an error output and a logged traceback."""
    def broken(_):
        raise RuntimeError("mixer gone")
    speaker.set_volume = broken
    result = toolbox(speaker).run("volume", '{"action": "set", "level": 3}')
    assert not result.ok and output(result) == {"error": "volume failed unexpectedly (RuntimeError)"}
    assert "mixer gone" in caplog.text


def test_one_log_line_per_call_arguments_only_when_loggable(speaker, caplog):
    """Each call logs name, duration and outcome; arguments only for loggable tools."""
    caplog.set_level(logging.INFO, logger="agent.tools.toolbox")
    loud = {**ECHO, "name": "loud", "loggable": True}
    tb = toolbox(speaker, [ECHO, loud], builtins=())
    tb.run("echo", '{"text": "private diary"}')
    tb.run("echo", '{"text": 42}')
    tb.run("loud", '{"text": "public notice"}')
    lines = [r.getMessage() for r in caplog.records if r.name == "agent.tools.toolbox"]
    assert len(lines) == 3
    assert lines[0].startswith("tool 'echo' ok in ") and "private" not in lines[0]
    assert lines[1].startswith("tool 'echo': invalid arguments in ") and "42" not in lines[1]
    assert lines[2].startswith("tool 'loud' ok in ") and 'with {"text": "public notice"}' in lines[2]


def test_duration_is_measured(speaker):
    """duration_s covers the action's wall time."""
    slow = {"name": "slow", "action": {"kind": "command",
                                       "argv": [sys.executable, "-c", "import time; time.sleep(0.2)"]}}
    result = toolbox(speaker, [slow], builtins=()).run("slow", "{}")
    assert result.ok and 0.2 <= result.duration_s < 3


def test_schema_allowing_extra_properties_is_respected(speaker):
    """additionalProperties = true in the config is kept: extras are accepted."""
    open_schema = {**ECHO, "parameters": {**ECHO["parameters"], "additionalProperties": True}}
    tb = toolbox(speaker, [ToolSettings.model_validate(open_schema).model_dump()], builtins=())
    assert tb.run("echo", '{"text": "hi", "extra": 1}').output == "hi"
