"""The gpio action: set, toggle or pulse one output pin, opened at first use."""

import json
import threading
import time
import warnings
from typing import Any

from agent.errors import ToolError
from agent.tools.settings import GpioAction

_ON = {"on", "true", "1", "yes", "open", "high"}
_OFF = {"off", "false", "0", "no", "closed", "close", "low"}


def switch_value(name: str, value: Any) -> bool:
    """An argument as on/off: booleans, numbers (non-zero is on) or words like "on"/"off"."""
    if isinstance(value, bool):
        return value
    if isinstance(value, (int, float)):
        return value != 0
    if isinstance(value, str) and value.strip().lower() in _ON | _OFF:
        return value.strip().lower() in _ON
    raise ToolError(f"argument {name!r} must be on or off (true/false, 1/0, \"on\"/\"off\")")


class GpioOutput:
    """One tool's output pin; a missing GPIO is a ToolError at call time, never a crash."""

    def __init__(self, action: GpioAction, pin_factory=None):
        self._action = action
        self._factory = pin_factory
        self._device = None
        self._lock = threading.Lock()  # two calls in flight must not open the pin twice

    def run(self, arguments: dict[str, Any]) -> str:
        a = self._action
        device = self._open()
        if a.operation == "toggle":
            device.toggle()
        elif a.operation == "pulse":
            device.on()
            time.sleep(a.pulse_s)
            device.off()
            return json.dumps({"pin": a.pin, "pulsed_s": a.pulse_s})
        elif a.value_arg:
            device.value = switch_value(a.value_arg, arguments.get(a.value_arg))
        else:
            device.on()
        return json.dumps({"pin": a.pin, "on": bool(device.value)})

    def _open(self):
        with self._lock:
            if self._device is None:
                try:
                    from gpiozero import DigitalOutputDevice  # the gpio extra: only gpio tools need it
                    with warnings.catch_warnings():
                        warnings.simplefilter("ignore")  # PinFactoryFallback noise on non-Pi hosts
                        self._device = DigitalOutputDevice(
                            self._action.pin, active_high=self._action.active_high,
                            initial_value=False, pin_factory=self._factory)
                except Exception as e:
                    raise ToolError(f"GPIO pin {self._action.pin} cannot be opened "
                                    f"({type(e).__name__}: {e})") from None
            return self._device

    def close(self) -> None:
        """Release the pin. Idempotent."""
        with self._lock:
            if self._device is not None:
                self._device.close()
                self._device = None
