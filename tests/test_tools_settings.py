"""[[tools]] config: every kind of mistake is a ConfigError that names the tool and the fix."""

import tomllib

import pytest
from pydantic import TypeAdapter, ValidationError

from agent.config import parse
from agent.errors import ConfigError
from agent.tools.settings import ToolList, ToolSettings, ToolboxSettings
from agent.tools.toolbox import Toolbox

EXAMPLES = '''
[toolbox]
builtins = ["time", "volume", "mute", "end_conversation", "timer"]
timer_ring_s = 60.0
max_timers = 10

[[tools]]
name = "desk_lamp"
description = "Switch the desk lamp on or off."
parameters = { type = "object", properties = { on = { type = "boolean" } }, required = ["on"] }
action = { kind = "gpio", pin = 17, operation = "set", value_arg = "on", active_high = true }

[[tools]]
name = "play_radio"
description = "Play an internet radio station."
loggable = true
[tools.parameters]
type = "object"
required = ["station"]
[tools.parameters.properties.station]
type = "string"
enum = ["jazz", "news", "classical"]
[tools.action]
kind = "command"
argv = ["/usr/local/bin/radio", "--station", "{station}"]
timeout_s = 5.0
cwd = ""
env_allow = ["XDG_RUNTIME_DIR"]
max_output_bytes = 4096

[[tools]]
name = "kitchen_light"
description = "Turn the kitchen light on or off."
[tools.parameters]
type = "object"
required = ["state"]
properties = { state = { type = "string", enum = ["on", "off"] } }
[tools.action]
kind = "http"
url = "http://homeassistant.local:8123/api/services/light/turn_{state}"
method = "POST"
body = "arguments"
headers = { Authorization = "Bearer {secret}" }
header_secret_files = { Authorization = "/etc/mira-agent/ha-token" }
timeout_s = 5.0
max_output_bytes = 4096

[[tools]]
name = "what_time_is_it"
description = ""
action = { kind = "builtin", name = "time" }
'''


def problem(tools: list[dict]) -> str:
    with pytest.raises(ConfigError) as e:
        parse({"tools": tools})
    return str(e.value)


def obj(**props) -> dict:
    return {"type": "object", "properties": props, "required": list(props)}


def test_documented_examples_load():
    """The TOML examples given for config/agent.toml (one tool of each kind) load as they are."""
    data = tomllib.loads(EXAMPLES)
    toolbox = ToolboxSettings.model_validate(data.pop("toolbox"))
    config = parse(data)
    kinds = [t.action.kind for t in config.settings.tools]
    assert kinds == ["gpio", "command", "http", "builtin"]
    assert toolbox.builtins == ["time", "volume", "mute", "end_conversation", "timer"]


def test_unknown_action_kind_names_the_tool_index():
    """An action kind that does not exist is refused at tools[i].action, listing the kinds."""
    msg = problem([{"name": "lamp", "action": {"kind": "gpio", "pin": 4}},
                   {"name": "zap", "action": {"kind": "teleport"}}])
    assert "tools[1].action" in msg and "'teleport'" in msg and "'gpio'" in msg


def test_missing_action_and_missing_pin_are_refused():
    """A tool without an action, or a gpio action without a pin, names the missing key."""
    assert "tools[0].action: required key is missing" in problem([{"name": "lamp"}])
    assert "tools[0].action.gpio.pin: required key is missing" in problem(
        [{"name": "lamp", "action": {"kind": "gpio"}}])


@pytest.mark.parametrize("pin", [-1, 28, 40])
def test_pin_outside_bcm_range_is_refused(pin):
    """A gpio pin must be a BCM number 0..27."""
    assert "tools[0].action.gpio.pin" in problem([{"name": "l", "action": {"kind": "gpio", "pin": pin}}])


@pytest.mark.parametrize("name", ["", "has space", "semi;colon", "x" * 65, "dot.ted", "ünï"])
def test_bad_tool_names_are_refused(name):
    """Tool names are 1-64 letters, digits, _ and -."""
    assert "tools[0].name" in problem([{"name": name, "action": {"kind": "gpio", "pin": 4}}])


@pytest.mark.parametrize("schema, where", [
    ({"type": "object", "properties": {"x": {"type": "strin"}}}, "properties/x/type"),
    ({"type": "object", "properties": {"x": {"type": "string", "pattern": "(["}}}, "pattern"),
    ({"type": "object", "required": "x"}, "required"),
    ({"type": "object", "properties": {"x": {"minimum": "zero"}}}, "minimum"),
])
def test_invalid_json_schema_is_refused_naming_the_tool(schema, where):
    """parameters is checked against the Draft 2020-12 meta-schema; the error names tool and place."""
    msg = problem([{"name": "lamp", "parameters": schema, "action": {"kind": "gpio", "pin": 4}}])
    assert "tools[0]" in msg and "tool 'lamp'" in msg and "not a valid JSON Schema" in msg
    assert where in msg


def test_parameters_must_be_an_object_schema():
    """The model passes arguments as an object: a string schema is refused."""
    msg = problem([{"name": "lamp", "parameters": {"type": "string"}, "action": {"kind": "gpio", "pin": 4}}])
    assert "tool 'lamp'" in msg and 'type = "object"' in msg


def test_placeholder_must_name_a_declared_property():
    """{x} in argv that is not a property of the schema is refused."""
    msg = problem([{"name": "say", "action": {"kind": "command", "argv": ["echo", "{text}"]}}])
    assert "tool 'say'" in msg and "{text} is not a property" in msg


def test_placeholder_on_an_optional_property_is_refused():
    """An argv element cannot disappear, so its argument must be required or have a default."""
    params = {"type": "object", "properties": {"text": {"type": "string"}}}
    msg = problem([{"name": "say", "parameters": params, "action": {"kind": "command", "argv": ["echo", "{text}"]}}])
    assert "optional property" in msg
    params["properties"]["text"]["default"] = "hello"
    assert parse({"tools": [{"name": "say", "parameters": params,
                             "action": {"kind": "command", "argv": ["echo", "{text}"]}}]})


def test_placeholder_on_an_object_property_is_refused():
    """Only scalars fill placeholders: an array property cannot be one."""
    params = obj(items={"type": "array"})
    msg = problem([{"name": "say", "parameters": params, "action": {"kind": "command", "argv": ["echo", "{items}"]}}])
    assert "array property" in msg


def test_program_cannot_be_a_placeholder():
    """argv[0] is fixed by the config: the model never picks the program."""
    msg = problem([{"name": "run", "parameters": obj(prog={"type": "string"}),
                    "action": {"kind": "command", "argv": ["{prog}"]}}])
    assert "argv[0]" in msg


def test_stray_brace_is_refused_and_doubled_brace_is_literal():
    """A lone { is a mistake; {{ is a literal brace."""
    assert "stray" in problem([{"name": "c", "action": {"kind": "command", "argv": ["echo", "{oops"]}}])
    assert parse({"tools": [{"name": "c", "action": {"kind": "command", "argv": ["echo", "{{x}}"]}}]})


@pytest.mark.parametrize("url", ["file:///etc/passwd", "ftp://host/x", "gopher://h/", "//host/x", "localhost:80"])
def test_non_http_urls_are_refused(url):
    """Only http:// and https:// URLs may be configured."""
    msg = problem([{"name": "h", "action": {"kind": "http", "url": url}}])
    assert "tools[0].action.http" in msg and "http:// or https://" in msg


def test_placeholder_in_the_host_is_refused():
    """Arguments may fill the path and query, never choose the host."""
    msg = problem([{"name": "h", "parameters": obj(host={"type": "string"}),
                    "action": {"kind": "http", "url": "http://{host}/x", "body": "none", "method": "GET"}}])
    assert "placeholder in its host" in msg


def test_get_with_a_json_body_is_refused():
    """GET sends no body: the config must say body = "none"."""
    msg = problem([{"name": "h", "action": {"kind": "http", "url": "http://127.0.0.1/x", "method": "GET"}}])
    assert 'body = "none"' in msg


def test_secret_placeholder_needs_a_secret_file():
    """{secret} in a header value without header_secret_files is refused."""
    msg = problem([{"name": "h", "action": {"kind": "http", "url": "https://x/y",
                                            "headers": {"Authorization": "Bearer {secret}"}}}])
    assert "header_secret_files" in msg


def test_builtin_parameters_are_fixed():
    """A builtin tool cannot redefine its schema."""
    msg = problem([{"name": "t", "parameters": {"type": "object"}, "action": {"kind": "builtin", "name": "time"}}])
    assert "tool 't'" in msg and "parameters are fixed" in msg
    assert "tools[0].action.builtin.name" in problem([{"name": "t", "action": {"kind": "builtin", "name": "clock"}}])


def test_env_allow_takes_variable_names_only():
    """env_allow entries are variable names, not assignments."""
    assert "env_allow" in problem([{"name": "c", "action": {"kind": "command", "argv": ["env"],
                                                            "env_allow": ["A=1"]}}])


def test_duplicate_tool_names_are_refused():
    """Two tools with one name are refused, naming both positions (ToolList and Toolbox)."""
    tools = [{"name": "lamp", "action": {"kind": "gpio", "pin": 4}},
             {"name": "lamp", "action": {"kind": "gpio", "pin": 5}}]
    with pytest.raises(ValidationError) as e:
        TypeAdapter(ToolList).validate_python(tools)
    assert "tools[1]" in str(e.value) and "tools[0]" in str(e.value)
    with pytest.raises(ConfigError, match=r"tools\[1\].*'lamp'.*tools\[0\]"):
        Toolbox([ToolSettings.model_validate(t) for t in tools], None, lambda p: p, builtins=())


def test_unknown_keys_are_refused():
    """A misspelt key inside an action is an error, not silently ignored."""
    msg = problem([{"name": "c", "action": {"kind": "command", "argv": ["env"], "timeout": 3}}])
    assert "tools[0].action.command.timeout: unknown key" in msg
