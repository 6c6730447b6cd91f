import logging
import sys
from pathlib import Path

import pytest
from gpiozero import Device
from gpiozero.pins.mock import MockFactory, MockPWMPin

# tests/ helpers (conformance, fixtures) import as top-level modules.
sys.path.insert(0, str(Path(__file__).resolve().parent))


@pytest.fixture
def pins():
    """gpiozero's mock pins (PWM-capable) as the pin factory; drive_low() presses a button."""
    Device.pin_factory = MockFactory(pin_class=MockPWMPin)
    yield Device.pin_factory
    Device.pin_factory.reset()
    Device.pin_factory = None


@pytest.fixture
def clean_logging():
    """The root logger back as it was after the test, with no handler or secret of ours left."""
    from agent.service import logs

    root = logging.getLogger()
    before = (list(root.handlers), root.level)
    logs.forget_secrets()
    yield
    for h in list(logs._installed):
        root.removeHandler(h)
    logs._installed.clear()
    root.handlers[:], root.level = before
    logs.forget_secrets()
