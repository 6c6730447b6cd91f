"""The command action for real: argv only, arguments inert inside their element, bounded and timed."""

import json
import os
import sys
import time
from pathlib import Path

import pytest

from agent.config import parse
from agent.tools.toolbox import MAX_ARGUMENTS_CHARS, Toolbox

PRINT_ARGV = "import json, sys; print(json.dumps(sys.argv[1:]))"


def toolbox(tmp_path: Path, *tools: dict) -> Toolbox:
    config = parse({"tools": list(tools)}, tmp_path / "agent.toml")
    return Toolbox(config.settings.tools, None, config.resolve, builtins=())


def argv_tool(**prop) -> dict:
    """A tool that prints the argv it received as JSON: [fixed, <text>, prefix-<text>]."""
    return {"name": "show", "parameters": {"type": "object", "required": ["text"],
                                           "properties": {"text": prop or {"type": "string"}}},
            "action": {"kind": "command", "argv": [sys.executable, "-c", PRINT_ARGV, "--",
                                                   "{text}", "prefix-{text}"]}}


HOSTILE = [
    "; rm -rf /",
    "$(touch pwned)",
    "`touch pwned`",
    "a\nb\n--evil",
    "../../../etc/passwd",
    "* ?",
    "a b\tc",
    "| cat /etc/passwd",
    "&& touch pwned",
    "'\"\\",
    "{text}",
    "-rf",
    "--help=$(id)",
    "\u202e\U0001f600 ünïcode",
]


@pytest.mark.parametrize("value", HOSTILE)
def test_hostile_strings_stay_one_inert_argv_element(tmp_path, value):
    """Shell metacharacters, newlines, ../ and options reach the program as one unchanged element."""
    with toolbox(tmp_path, argv_tool()) as tb:
        result = tb.run("show", json.dumps({"text": value}))
    assert result.ok, result.output
    assert json.loads(result.output) == ["--", value, "prefix-" + value]
    assert not (tmp_path / "pwned").exists()


def test_leading_dash_without_double_dash_is_refused(tmp_path):
    """A value that starts with '-' in an element's first position would read as an option."""
    tool = {"name": "ls", "parameters": {"type": "object", "required": ["path"],
                                         "properties": {"path": {"type": "string"}}},
            "action": {"kind": "command", "argv": [sys.executable, "-c", PRINT_ARGV, "{path}"]}}
    with toolbox(tmp_path, tool) as tb:
        refused = tb.run("ls", '{"path": "-rf"}')
        fine = tb.run("ls", '{"path": "a-rf"}')
    assert not refused.ok and "would be read as an option" in refused.output
    assert json.loads(fine.output) == ["a-rf"]


def test_scalars_fill_in_json_spelling(tmp_path):
    """Numbers and booleans become their JSON text: 3, 2.5, true."""
    tool = {"name": "n", "parameters": {"type": "object", "required": ["i", "f", "b"], "properties": {
        "i": {"type": "integer"}, "f": {"type": "number"}, "b": {"type": "boolean"}}},
        "action": {"kind": "command", "argv": [sys.executable, "-c", PRINT_ARGV, "{i}", "{f}", "{b}"]}}
    with toolbox(tmp_path, tool) as tb:
        assert json.loads(tb.run("n", '{"i": 3, "f": 2.5, "b": true}').output) == ["3", "2.5", "true"]
        # a negative number is a value, not an option: only strings are held to the '-' rule
        assert json.loads(tb.run("n", '{"i": -3, "f": 2.5, "b": false}').output) == ["-3", "2.5", "false"]


def test_placeholder_default_fills_a_missing_argument(tmp_path):
    """A property with a default fills its placeholder when the model leaves it out."""
    tool = argv_tool(type="string", default="hello")
    tool["parameters"]["required"] = []
    with toolbox(tmp_path, tool) as tb:
        assert json.loads(tb.run("show", "{}").output) == ["--", "hello", "prefix-hello"]


def test_nul_character_is_refused(tmp_path):
    """A NUL cannot travel in an argv element: refused, not truncated."""
    with toolbox(tmp_path, argv_tool()) as tb:
        result = tb.run("show", json.dumps({"text": "a\u0000b"}))
    assert not result.ok and "NUL" in result.output


def test_schema_failure_never_runs_the_program(tmp_path):
    """Wrong types, extra properties and a ../ refused by a pattern: the program does not run."""
    tool = {"name": "touch", "parameters": {"type": "object", "required": ["name"], "properties": {
        "name": {"type": "string", "pattern": "^[A-Za-z0-9_-]{1,32}$"}}},
        "action": {"kind": "command", "argv": [sys.executable, "-c",
                                               "import sys; open('ran-' + sys.argv[1], 'w')", "{name}"]}}
    with toolbox(tmp_path, tool) as tb:
        for bad in ['{"name": 5}', '{"name": ["a"]}', '{"name": "ok", "extra": 1}', '{"name": "../x"}',
                    '{"name": "a/b"}', '{}', '{"name": "' + "x" * 33 + '"}', '["ok"]', '"ok"', 'null']:
            result = tb.run("touch", bad)
            assert not result.ok and "error" in json.loads(result.output), bad
        assert list(tmp_path.iterdir()) == []
        assert tb.run("touch", '{"name": "ok"}').ok
    assert (tmp_path / "ran-ok").exists()


def test_oversize_arguments_are_refused_with_a_bounded_error(tmp_path):
    """Arguments past the size limit are refused before parsing; the error output stays short."""
    with toolbox(tmp_path, argv_tool(type="string", maxLength=100)) as tb:
        huge = tb.run("show", json.dumps({"text": "x" * (MAX_ARGUMENTS_CHARS + 10)}))
        long = tb.run("show", json.dumps({"text": "y" * 5000}))
    assert not huge.ok and "limit" in huge.output
    assert not long.ok and "too long" in long.output and len(long.output) < 600


def test_stdout_is_the_result_and_bounded(tmp_path):
    """Output past max_output_bytes is read and dropped, and marked as truncated."""
    tool = {"name": "big", "action": {"kind": "command", "max_output_bytes": 1000,
                                      "argv": [sys.executable, "-c", "print('x' * 1_000_000)"]}}
    with toolbox(tmp_path, tool) as tb:
        result = tb.run("big", "")
    assert result.ok and result.output == "x" * 1000 + " [output truncated]"


def test_non_zero_exit_is_an_error_with_the_stderr_tail(tmp_path):
    """A failing program gives its exit status and the end of its stderr, bounded."""
    code = "import sys; sys.stderr.write('noise ' * 5000 + 'lamp not found'); sys.exit(3)"
    tool = {"name": "fail", "action": {"kind": "command", "argv": [sys.executable, "-c", code]}}
    with toolbox(tmp_path, tool) as tb:
        result = tb.run("fail", "{}")
    error = json.loads(result.output)["error"]
    assert not result.ok and "exited with status 3" in error and error.endswith("lamp not found")
    assert len(result.output) < 600


def test_missing_program_is_an_error(tmp_path):
    """A program that does not exist is an error output naming it."""
    tool = {"name": "nope", "action": {"kind": "command", "argv": ["no-such-program-xyz"]}}
    with toolbox(tmp_path, tool) as tb:
        result = tb.run("nope", "{}")
    assert not result.ok and "cannot start no-such-program-xyz" in result.output


@pytest.mark.slow
def test_timeout_kills_the_whole_process_group(tmp_path):
    """At the timeout the program and its children are killed and the model hears so."""
    code = ("import subprocess, sys, time;"
            "p = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)']);"
            "open('child.pid', 'w').write(str(p.pid)); time.sleep(60)")
    tool = {"name": "hang", "action": {"kind": "command", "timeout_s": 1.0,
                                       "argv": [sys.executable, "-c", code]}}
    with toolbox(tmp_path, tool) as tb:
        result = tb.run("hang", "{}")
    assert not result.ok and "timed out after 1 s" in result.output
    assert result.duration_s < 5
    pid = int((tmp_path / "child.pid").read_text())
    for _ in range(50):  # the orphan is reaped by init shortly after the kill
        status = Path(f"/proc/{pid}/status")
        if not status.exists() or "State:\tZ" in status.read_text():
            break
        time.sleep(0.05)
    else:
        pytest.fail(f"child {pid} survived the timeout")


def test_environment_is_path_plus_the_allowlist(tmp_path, monkeypatch):
    """Only PATH and the allowed variables reach the program; others (secrets) do not."""
    monkeypatch.setenv("MIRA_ALLOWED", "yes")
    monkeypatch.setenv("MIRA_API_KEY", "sk-secret")
    tool = {"name": "env", "action": {"kind": "command", "argv": ["/usr/bin/env"],
                                      "env_allow": ["MIRA_ALLOWED", "NOT_SET_ANYWHERE"]}}
    with toolbox(tmp_path, tool) as tb:
        result = tb.run("env", "{}")
    lines = sorted(result.output.splitlines())
    assert lines == ["MIRA_ALLOWED=yes", f"PATH={os.environ['PATH']}"]


def test_relative_cwd_and_program_resolve_against_the_config_folder(tmp_path):
    """cwd and a relative program path are relative to the config file's folder."""
    (tmp_path / "scripts").mkdir()
    script = tmp_path / "scripts" / "where.sh"
    script.write_text("#!/bin/sh\npwd\n")
    script.chmod(0o755)
    tool = {"name": "where", "action": {"kind": "command", "argv": ["scripts/where.sh"], "cwd": "scripts"}}
    with toolbox(tmp_path, tool) as tb:
        assert tb.run("where", "{}").output == str(tmp_path / "scripts")


def test_silent_success_says_ok(tmp_path):
    """A program with no output reports {"ok": true} so the model has something to say."""
    tool = {"name": "quiet", "action": {"kind": "command", "argv": ["/bin/true"]}}
    with toolbox(tmp_path, tool) as tb:
        assert tb.run("quiet", "{}").output == '{"ok": true}'


def test_missing_program_is_warned_at_start_and_missing_cwd_is_an_error(tmp_path, caplog):
    """A program not found logs a warning when the toolbox is built; a missing cwd fails the call."""
    tools = [{"name": "ghost", "action": {"kind": "command", "argv": ["no-such-program-xyz"]}},
             {"name": "lost", "action": {"kind": "command", "argv": ["/bin/true"], "cwd": "gone"}}]
    with toolbox(tmp_path, *tools) as tb:
        assert "tool ghost: program no-such-program-xyz is not found" in caplog.text
        result = tb.run("lost", "{}")
    assert not result.ok and f"working directory {tmp_path / 'gone'} does not exist" in result.output
