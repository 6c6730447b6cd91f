"""Settings of the tools the model may call: one [[tools]] table per tool, one action each."""

import re
from typing import Annotated, Any, Literal, Union
from urllib.parse import urlsplit

from jsonschema import Draft202012Validator
from jsonschema.exceptions import SchemaError
from pydantic import AfterValidator, Field, field_validator, model_validator
from pydantic_core import PydanticCustomError

from agent.section import Section
from agent.tools import placeholders

NAME = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_HEADER_NAME = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")
BUILTIN_NAMES = ("time", "volume", "mute", "end_conversation", "timer")
BuiltinName = Literal["time", "volume", "mute", "end_conversation", "timer"]


class GpioAction(Section):
    """action = {kind = "gpio", ...}: drive an output pin (gpiozero DigitalOutputDevice)."""

    kind: Literal["gpio"]
    """The action kind."""
    pin: int = Field(ge=0, le=27)
    """BCM number of the output pin (0..27)."""
    operation: Literal["set", "toggle", "pulse"] = "set"
    """set: on or off from value_arg (always on without one); toggle; pulse: on for pulse_s."""
    value_arg: str = ""
    """For set: the argument whose value turns the pin on (true, 1, "on") or off (false, 0, "off")."""
    pulse_s: float = Field(0.5, gt=0, le=10)
    """For pulse: seconds the pin stays on."""
    active_high: bool = True
    """False when the load is on with the pin low (e.g. an active-low relay board)."""


class CommandAction(Section):
    """action = {kind = "command", ...}: run a program (never a shell); its stdout is the result."""

    kind: Literal["command"]
    """The action kind."""
    argv: list[str] = Field(min_length=1)
    """Program and arguments; `{name}` in an element is replaced by that argument, inside the element."""
    timeout_s: float = Field(10.0, gt=0, le=300)
    """Seconds before the program and its children are killed."""
    cwd: str = ""
    """Working directory (relative to the config file's folder); empty: that folder."""
    env_allow: list[str] = []
    """Environment variables passed through from the daemon's environment, besides PATH."""
    max_output_bytes: int = Field(4096, ge=1, le=16384)
    """Bytes of stdout kept; more is read and dropped."""

    @field_validator("env_allow")
    @classmethod
    def _env_names(cls, names: list[str]) -> list[str]:
        return check_env_names(names)


class HttpAction(Section):
    """action = {kind = "http", ...}: an HTTP(S) request; the response body is the result."""

    kind: Literal["http"]
    """The action kind."""
    url: str
    """http:// or https:// URL; `{name}` in its path or query is replaced by that argument, URL-encoded."""
    method: Literal["GET", "POST", "PUT", "PATCH", "DELETE"] = "POST"
    """HTTP method."""
    headers: dict[str, str] = {}
    """Extra request headers; `{secret}` in a value is replaced by that header's secret file."""
    header_secret_files: dict[str, str] = {}
    """Header -> file holding a token (mode 0600, or a systemd credential named like the file)."""
    body: Literal["arguments", "none"] = "arguments"
    """arguments: the call's arguments as a JSON body; none: no body (GET, DELETE)."""
    timeout_s: float = Field(10.0, gt=0, le=120)
    """Seconds allowed to connect and to receive the response."""
    max_output_bytes: int = Field(4096, ge=1, le=16384)
    """Bytes of the response body kept."""

    @model_validator(mode="after")
    def _check(self) -> "HttpAction":
        check_http_url(self.url)
        if self.method in ("GET", "DELETE") and self.body == "arguments":
            raise ValueError(f'a {self.method} request sends no body; set body = "none" and put '
                             f"arguments in the url as {{name}}")
        for header in [*self.headers, *self.header_secret_files]:
            if not _HEADER_NAME.match(header):
                raise ValueError(f"{header!r} is not an HTTP header name")
        for header, value in self.headers.items():
            if "\r" in value or "\n" in value:
                raise ValueError(f"header {header} holds a line break")
            if "{secret}" in value and header not in self.header_secret_files:
                raise ValueError(f"header {header} uses {{secret}}; name its file in "
                                 f"header_secret_files")
        return self


class BuiltinAction(Section):
    """action = {kind = "builtin", ...}: one of the speaker's own tools, under this tool's name."""

    kind: Literal["builtin"]
    """The action kind."""
    name: BuiltinName
    """time, volume, mute, end_conversation or timer."""


Action = Annotated[
    Union[GpioAction, CommandAction, HttpAction, BuiltinAction],
    Field(discriminator="kind"),
]


def check_env_names(names: list[str]) -> list[str]:
    """env_allow: every entry an environment variable name."""
    for n in names:
        if not _ENV_NAME.match(n):
            raise ValueError(f"{n!r} is not an environment variable name")
    return names


def check_http_url(url: str) -> None:
    """Refuse non-http(s) URLs and placeholders that could choose the host."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError(f"{url!r} is not an http:// or https:// URL")
    if "{" in parts.netloc or "}" in parts.netloc:
        raise ValueError(f"{url!r} has a placeholder in its host; arguments may only fill the "
                         f"path and query")
    placeholders.parse(url)


def check_schema(schema: dict[str, Any]) -> None:
    """ValueError unless the schema is a valid Draft 2020-12 object schema."""
    try:
        Draft202012Validator.check_schema(schema)
    except SchemaError as e:
        where = "/".join(str(p) for p in e.absolute_path) or "(top)"
        raise ValueError(f"parameters is not a valid JSON Schema at {where}: {e.message}") from None
    if schema.get("type") != "object":
        raise ValueError('parameters must be an object schema: type = "object"')


class ToolSettings(Section):
    """[[tools]]: one local action the model may call."""

    name: str
    """Function name the model sees (1-64 letters, digits, _ and -)."""
    description: str = ""
    """What the tool does, for the model (builtin: empty keeps the built-in description)."""
    parameters: dict[str, Any] = {"type": "object", "properties": {}}
    """JSON Schema (Draft 2020-12) of the arguments; extra properties are refused unless it allows them."""
    action: Action
    """The local action: {kind = "gpio" | "command" | "http" | "builtin", ...}."""
    loggable: bool = False
    """Log the call's arguments (off: only name, duration and outcome are logged)."""

    @field_validator("name")
    @classmethod
    def _name(cls, name: str) -> str:
        if not NAME.match(name):
            raise ValueError(f"tool name {name!r} must be 1-64 letters, digits, _ or -")
        return name

    @model_validator(mode="after")
    def _check(self) -> "ToolSettings":
        try:
            self._check_action()
        except ValueError as e:
            raise PydanticCustomError("tool_config", "tool {tool}: {problem}",
                                      {"tool": repr(self.name), "problem": str(e)}) from None
        return self

    def _check_action(self) -> None:
        action = self.action
        if isinstance(action, BuiltinAction):
            if "parameters" in self.model_fields_set:
                raise ValueError("a builtin tool's parameters are fixed; remove parameters")
            return
        check_schema(self.parameters)
        props = self.parameters.get("properties", {})
        if isinstance(action, GpioAction):
            if action.value_arg and action.value_arg not in props:
                raise ValueError(f"value_arg {action.value_arg!r} is not a property of parameters")
            return
        templates = action.argv if isinstance(action, CommandAction) else [action.url]
        if isinstance(action, CommandAction) and placeholders.names(action.argv[0]):
            raise ValueError("argv[0] (the program) cannot hold a placeholder")
        for template in templates:
            for arg in placeholders.names(template):
                self._check_placeholder(arg, props)

    def _check_placeholder(self, arg: str, props: dict[str, Any]) -> None:
        if arg not in props:
            raise ValueError(f"placeholder {{{arg}}} is not a property of parameters")
        prop = props[arg] if isinstance(props[arg], dict) else {}
        if prop.get("type") in ("object", "array"):
            raise ValueError(f"placeholder {{{arg}}} names a {prop['type']} property; only "
                             f"strings, numbers and booleans fill placeholders")
        if arg not in self.parameters.get("required", []) and "default" not in prop:
            raise ValueError(f"placeholder {{{arg}}} names an optional property; add it to "
                             f"required or give it a default")


def _unique_names(tools: list[ToolSettings]) -> list[ToolSettings]:
    seen: dict[str, int] = {}
    for i, tool in enumerate(tools):
        if tool.name in seen:
            raise PydanticCustomError(
                "duplicate_tool", "tools[{i}]: the name {name} is already used by tools[{j}]; "
                "give each tool its own name", {"i": i, "j": seen[tool.name], "name": repr(tool.name)})
        seen[tool.name] = i
    return tools


ToolList = Annotated[list[ToolSettings], AfterValidator(_unique_names)]
"""The type of Settings.tools: every tool checked, names unique."""


class ToolboxSettings(Section):
    """[toolbox]: the built-in tools a speaker has with no setup."""

    builtins: list[BuiltinName] = list(BUILTIN_NAMES)
    """Built-ins offered to the model: time, volume, mute, end_conversation, timer; [] for none."""
    timer_ring_s: float = Field(60.0, gt=0, le=3600)
    """A ringing timer stops by itself after this many seconds."""
    max_timers: int = Field(10, ge=1, le=100)
    """Timers that may run at once."""
