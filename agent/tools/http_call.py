"""The http action: one request to a configured URL; the response body, bounded, is the result."""

import json
import logging
import socket
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any, Callable
from urllib.parse import quote, urlsplit

from agent.errors import ToolError
from agent.realtime.settings import is_loopback
from agent.secrets import find_secret, redact
from agent.tools import placeholders
from agent.tools.settings import HttpAction

log = logging.getLogger(__name__)

ERROR_BODY_BYTES = 300
USER_AGENT = "mira-agent"


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    """A redirect is an error: it could carry the token to another host or scheme."""

    def redirect_request(self, req, fp, code, msg, headers, newurl):
        return None


_opener = urllib.request.build_opener(_NoRedirects)


class HttpCall:
    """One tool's request; header secrets are read once, here (SecretError names the key)."""

    def __init__(self, action: HttpAction, tool: str, resolve: Callable[[str], Path]):
        self._action = action
        self._secrets: dict[str, str] = {}
        for header, file in action.header_secret_files.items():
            self._secrets[header] = find_secret(
                credential=Path(file).name, file=str(resolve(file)), env="",
                what=f"{header} token", key=f"tools {tool!r} header_secret_files.{header}")
        host = urlsplit(action.url).hostname or ""
        if self._secrets and action.url.startswith("http://") and not is_loopback(host):
            log.warning("tool %s sends a token in clear over http:// to %s; use https://", tool, host)

    def headers(self) -> dict[str, str]:
        """The request headers, secrets filled in."""
        out = {"User-Agent": USER_AGENT, "Accept": "application/json, text/plain;q=0.9, */*;q=0.1"}
        if self._action.body == "arguments":
            out["Content-Type"] = "application/json"
        for header, value in self._action.headers.items():
            out[header] = value.replace("{secret}", self._secrets.get(header, ""))
        for header, secret in self._secrets.items():
            if header not in self._action.headers:
                out[header] = secret
        return out

    def run(self, arguments: dict[str, Any]) -> str:
        try:
            return redact(self._request(arguments), *self._secrets.values())
        except ToolError as e:
            raise ToolError(redact(str(e), *self._secrets.values())) from None

    def _request(self, arguments: dict[str, Any]) -> str:
        a = self._action
        try:
            url = placeholders.fill(a.url, arguments, encode=lambda s: quote(s, safe=""))
        except ValueError as e:
            raise ToolError(str(e)) from None
        if urlsplit(url)[:2] != urlsplit(a.url)[:2]:  # encoded values cannot do this; make sure
            raise ToolError("the arguments would change the URL's scheme or host")
        body = json.dumps(arguments).encode() if a.body == "arguments" else None
        request = urllib.request.Request(url, data=body, method=a.method, headers=self.headers())
        deadline = time.monotonic() + a.timeout_s
        try:
            with _opener.open(request, timeout=a.timeout_s) as response:
                text, truncated = _read(response, a.max_output_bytes, deadline)
                status = response.status
        except urllib.error.HTTPError as e:
            detail, _ = _read(e, ERROR_BODY_BYTES, deadline) if e.fp else ("", False)
            where = f" to {e.headers.get('Location', '?')}" if 300 <= e.code < 400 else ""
            raise ToolError(f"HTTP {e.code} {e.reason}{where}" + (f": {detail}" if detail else ""))
        except (urllib.error.URLError, OSError) as e:
            reason = getattr(e, "reason", e)
            if isinstance(reason, (socket.timeout, TimeoutError)):
                raise ToolError(f"the request timed out after {a.timeout_s:g} s") from None
            raise ToolError(f"the request to {urlsplit(url).hostname} failed: {reason}") from None
        if truncated:
            text += " [output truncated]"
        return text or json.dumps({"ok": True, "status": status})


def _read(response, limit: int, deadline: float) -> tuple[str, bool]:
    """At most limit bytes of the body, read in pieces until the deadline."""
    data = bytearray()
    while len(data) <= limit:
        if time.monotonic() > deadline:
            raise ToolError("the response took too long and was cut off")
        chunk = response.read1(limit + 1 - len(data))
        if not chunk:
            break
        data += chunk
    return bytes(data[:limit]).decode("utf-8", "replace").strip(), len(data) > limit

