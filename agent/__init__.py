"""mira-agent: the always-on voice daemon of a Raspberry Pi smart speaker."""

__version__ = "0.1.0"
