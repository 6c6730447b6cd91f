"""Secrets (API key, access keys, tokens): found in one order, never logged."""

import os
import stat
from pathlib import Path

from agent.errors import SecretError


def _read_private_file(path: Path, what: str, key: str) -> str:
    try:
        mode = path.stat().st_mode
    except OSError as e:
        raise SecretError(f"{key}: cannot read {what} file {path} ({e.strerror}); "
                          f"check the path and that the daemon's user may read it") from None
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise SecretError(f"{key}: {what} file {path} is readable by other users "
                          f"(mode {stat.S_IMODE(mode):04o}); run: chmod 600 {path}")
    try:
        value = path.read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as e:
        raise SecretError(f"{key}: cannot read {what} file {path} ({e})") from None
    if not value:
        raise SecretError(f"{key}: {what} file {path} is empty")
    return value


def find_secret(*, credential: str, file: str, env: str, what: str, key: str,
                base_dir: Path | None = None) -> str | None:
    """The secret from, in order: the systemd credential, the configured file, the environment.

    Returns None when none of the three is set; raises SecretError when one is set but unusable.
    """
    cred_dir = os.environ.get("CREDENTIALS_DIRECTORY")
    if cred_dir and (Path(cred_dir) / credential).exists():
        # systemd makes credential files private to the service: no mode check needed.
        value = (Path(cred_dir) / credential).read_text(encoding="utf-8").strip()
        if value:
            return value
    if file:
        path = Path(file)
        if not path.is_absolute() and base_dir is not None:
            path = base_dir / path
        return _read_private_file(path, what, key)
    value = os.environ.get(env, "").strip()
    return value or None


def redact(text: str, *secrets: str | None) -> str:
    """Text with every occurrence of the given secrets replaced by ***."""
    for s in secrets:
        if s:
            text = text.replace(s, "***")
    return text
