"""The toolbox: what the model is told it may call, and the one door every call goes through."""

import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

from jsonschema import Draft202012Validator
from jsonschema.exceptions import best_match

from agent.errors import ConfigError, ToolError
from agent.tools.builtins import BUILTINS
from agent.tools.command import find_program, run_command
from agent.tools.device import DeviceControls
from agent.tools.gpio import GpioOutput
from agent.tools.http_call import HttpCall
from agent.tools.settings import (BUILTIN_NAMES, BuiltinAction, CommandAction, GpioAction,
                                  HttpAction, ToolSettings)

log = logging.getLogger(__name__)

MAX_ARGUMENTS_CHARS = 32768
MAX_OUTPUT_CHARS = 20000  # backstop: actions bound themselves to max_output_bytes (<= 16384)
MAX_ERROR_CHARS = 400


@dataclass(frozen=True)
class ToolResult:
    """What goes back to the model as the function_call_output."""

    output: str
    """A string for the model; on failure a JSON object {"error": "..."}."""
    ok: bool
    """Whether the action ran and succeeded."""
    duration_s: float
    """Wall time of the call, validation included."""


@dataclass(frozen=True)
class _Tool:
    name: str
    description: str
    parameters: dict[str, Any]
    validator: Draft202012Validator
    action: Callable[[dict[str, Any]], str]
    loggable: bool


def error_output(message: str) -> str:
    """A bounded {"error": ...} JSON string the model can read and speak about."""
    if len(message) > MAX_ERROR_CHARS:  # keep both ends: what failed, and the last words of stderr
        half = MAX_ERROR_CHARS // 2
        message = f"{message[:half]} ... {message[-half:]}"
    return json.dumps({"error": message})


def _bounded(text: str) -> str:
    return text if len(text) <= MAX_OUTPUT_CHARS else text[:MAX_OUTPUT_CHARS] + " [output truncated]"


def _closed_schema(schema: dict[str, Any]) -> dict[str, Any]:
    """Extra properties are refused unless the schema says otherwise: they could reach a body."""
    return schema if "additionalProperties" in schema else {**schema, "additionalProperties": False}


def _no_constant(name: str):
    raise ValueError(f"{name} is not a JSON number")


class Toolbox:
    """The declared tools and the built-ins; run() never raises and never runs unvalidated arguments."""

    def __init__(self, tools: Sequence[ToolSettings], device: DeviceControls,
                 resolve: Callable[[str], Path], *, builtins: Sequence[str] = BUILTIN_NAMES,
                 pin_factory=None):
        self._device = device
        self._pins: list[GpioOutput] = []
        self._tools: dict[str, _Tool] = {}
        self._builtin_tools: dict[str, str] = {}  # built-in -> the tool name it is offered as
        names = [t.name for t in tools]
        for i, name in enumerate(names):
            if name in names[:i]:
                raise ConfigError(f"tools[{i}]: the name {name!r} is already used by "
                                  f"tools[{names.index(name)}]; give each tool its own name")
        declared = {t.action.name for t in tools if isinstance(t.action, BuiltinAction)}
        for b in builtins:
            builtin = BUILTINS[b]
            # A [[tools]] entry of the same name replaces a built-in; a builtin action renames it.
            if b not in declared and builtin.tool not in names:
                self._add(builtin.tool, builtin.description, builtin.parameters,
                          self._builtin_action(builtin), True)
                self._builtin_tools[b] = builtin.tool
        for t in tools:
            if isinstance(t.action, BuiltinAction):
                self._builtin_tools.setdefault(t.action.name, t.name)
            self._add(t.name, *self._describe(t), self._action(t, resolve, pin_factory), t.loggable)

    # -- what the model is told -------------------------------------------------------------

    def declarations(self) -> list[dict[str, Any]]:
        """The `tools` list of session.update."""
        return [{"type": "function", "name": t.name, "description": t.description,
                 "parameters": json.loads(json.dumps(t.parameters))} for t in self._tools.values()]

    @property
    def names(self) -> list[str]:
        """Every tool name the model may call."""
        return list(self._tools)

    def builtin_tool(self, builtin: str) -> str | None:
        """The tool name a built-in (time, volume, timer, ...) is offered as; None when it is off."""
        return self._builtin_tools.get(builtin)

    # -- calls ------------------------------------------------------------------------------

    def run(self, name: str, arguments_json: str) -> ToolResult:
        """Validate and run one call; every failure becomes an error output. Never raises."""
        t0 = time.perf_counter()
        name, arguments_json = str(name), arguments_json or ""
        tool = self._tools.get(name)
        stage = "unknown tool"
        try:
            if tool is None:
                raise ToolError(f"there is no tool named {name[:64]!r}; the tools are "
                                + ", ".join(self._tools))
            stage = "invalid arguments"
            arguments = self._arguments(tool, arguments_json)
            stage = "failed"
            output, ok = _bounded(tool.action(arguments)), True
        except ToolError as e:
            output, ok = error_output(str(e)), False
        except Exception as e:  # a bug or an unexpected library error: the model hears of it, we log it
            log.exception("tool %r raised", name[:64])
            output, ok = error_output(f"{name[:64]} failed unexpectedly ({type(e).__name__})"), False
        duration = time.perf_counter() - t0
        self._log(name, tool, arguments_json, ok, stage, output, duration)
        return ToolResult(output, ok, duration)

    def _arguments(self, tool: _Tool, text: str) -> dict[str, Any]:
        if len(text) > MAX_ARGUMENTS_CHARS:
            raise ToolError(f"the arguments are {len(text)} characters long; the limit is "
                            f"{MAX_ARGUMENTS_CHARS}")
        try:
            arguments = json.loads(text, parse_constant=_no_constant) if text.strip() else {}
        except (ValueError, RecursionError) as e:
            raise ToolError(f"the arguments are not valid JSON ({e})") from None
        if not isinstance(arguments, dict):
            raise ToolError("the arguments must be a JSON object")
        error = best_match(tool.validator.iter_errors(arguments))
        if error is not None:
            where = "/".join(str(p) for p in error.absolute_path)
            raise ToolError(f"invalid arguments{' at ' + where if where else ''}: {error.message}")
        for key, prop in tool.parameters.get("properties", {}).items():
            if key not in arguments and isinstance(prop, dict) and "default" in prop:
                arguments[key] = prop["default"]
        return arguments

    @staticmethod
    def _log(name, tool, arguments_json, ok, stage, output, duration) -> None:
        shown = name[:64]  # the model chose it: %r keeps line breaks out of the log
        args = f" with {arguments_json.strip()[:200] or '{}'}" if tool and tool.loggable else ""
        if ok:
            log.info("tool %r ok in %.3f s%s", shown, duration, args)
        elif args:
            log.warning("tool %r: %s in %.3f s%s: %s", shown, stage, duration, args, output[:300])
        else:  # error details may quote the arguments of a tool that is not loggable
            log.warning("tool %r: %s in %.3f s", shown, stage, duration)

    # -- building ---------------------------------------------------------------------------

    def _add(self, name, description, parameters, action, loggable) -> None:
        parameters = _closed_schema(parameters)
        self._tools[name] = _Tool(name, description, parameters,
                                  Draft202012Validator(parameters), action, loggable)

    @staticmethod
    def _describe(t: ToolSettings) -> tuple[str, dict[str, Any]]:
        if isinstance(t.action, BuiltinAction):
            b = BUILTINS[t.action.name]
            return t.description or b.description, b.parameters
        return t.description, t.parameters

    def _builtin_action(self, builtin) -> Callable[[dict[str, Any]], str]:
        return lambda args: json.dumps(builtin.run(args, self._device))

    def _action(self, t: ToolSettings, resolve, pin_factory) -> Callable[[dict[str, Any]], str]:
        a = t.action
        if isinstance(a, BuiltinAction):
            return self._builtin_action(BUILTINS[a.name])
        if isinstance(a, GpioAction):
            pin = GpioOutput(a, pin_factory)
            self._pins.append(pin)
            return pin.run
        if isinstance(a, CommandAction):
            if find_program(a, resolve) is None:  # may appear later (a mount): warn, do not refuse
                log.warning("tool %s: program %s is not found or not executable", t.name, a.argv[0])
            return lambda args: run_command(a, args, resolve)
        if isinstance(a, HttpAction):
            return HttpCall(a, t.name, resolve).run
        raise ConfigError(f"tool {t.name!r}: unknown action kind")

    def close(self) -> None:
        """Release the GPIO pins. Idempotent."""
        for pin in self._pins:
            pin.close()

    def __enter__(self) -> "Toolbox":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
