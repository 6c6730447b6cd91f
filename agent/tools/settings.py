"""Settings of the tools the model may call."""

from typing import Any

from agent.section import Section


class ToolSettings(Section):
    """[[tools]]: one local action the model may call."""

    name: str
    """Function name the model sees (letters, digits, _ and -)."""
    description: str = ""
    """What the tool does, for the model."""
    parameters: dict[str, Any] = {"type": "object", "properties": {}}
    """JSON Schema of the arguments."""
    action: dict[str, Any] = {}
    """The local action: {kind = "gpio" | "command" | "http" | "builtin", ...}."""
    loggable: bool = False
    """Log the call's arguments (off: only name, duration and outcome are logged)."""
