"""The project's exceptions: one base, each message a sentence a user can act on."""

EX_CONFIG = 78  # sysexits.h: systemd's RestartPreventExitStatus stops retrying on it


class MiraAgentError(Exception):
    """Base of every error the daemon raises on purpose."""


class ConfigError(MiraAgentError):
    """The configuration is missing, unreadable or invalid; names the key and the fix."""

    def __init__(self, message: str, *, keys: tuple[str, ...] = ()):
        super().__init__(message)
        self.keys = keys
        """The config keys at fault (e.g. "session.voice"), when known."""


class SecretError(ConfigError):
    """A secret (API key, access key, token) is missing or stored unsafely."""


class AudioDeviceError(MiraAgentError):
    """An audio device cannot be found, opened or kept open."""


class HardwareError(MiraAgentError):
    """A GPIO or SPI device (LEDs, buttons) cannot be opened or used."""


class ProtocolError(MiraAgentError):
    """A server message is malformed or violates the protocol."""


class ConnectionFailed(MiraAgentError):
    """The realtime connection could not be opened or was lost."""

    def __init__(self, message: str, *, status: int | None = None, close_code: int | None = None,
                 error_code: str | None = None):
        super().__init__(message)
        self.status = status
        self.close_code = close_code
        self.error_code = error_code


class ToolError(MiraAgentError):
    """A tool call failed; the message is returned to the model."""
