"""The http action for real, against an http.server on 127.0.0.1: body, headers, secrets, bounds."""

import json
import logging
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from agent.config import parse
from agent.errors import SecretError
from agent.tools.toolbox import Toolbox

TOKEN = "tok-3f9a7c1e-never-in-logs"


class Handler(BaseHTTPRequestHandler):
    """Answers by path; records every request it gets."""

    def do_GET(self):
        self._answer()

    do_POST = do_PUT = do_DELETE = do_GET

    def _answer(self):
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length).decode() if length else ""
        self.server.seen.append({"method": self.command, "path": self.path, "body": body,
                                 "headers": dict(self.headers)})
        path = self.path.split("?")[0]
        if path.startswith("/api/"):
            self._send(200, json.dumps({"done": True, "got": json.loads(body) if body else None}))
        elif path == "/big":
            self._send(200, "z" * 200_000)
        elif path == "/slow":
            time.sleep(3)
            self._send(200, "late")
        elif path == "/fail":
            self._send(500, "database on fire " * 100)
        elif path == "/redirect":
            self.send_response(302)
            self.send_header("Location", "http://example.invalid/steal")
            self.send_header("Content-Length", "0")
            self.end_headers()
        elif path == "/whoami":
            self._send(200, "you sent " + self.headers.get("Authorization", "nothing"))
        elif path == "/empty":
            self.send_response(204)
            self.end_headers()
        else:
            self._send(404, "no such thing")

    def _send(self, status: int, text: str):
        data = text.encode()
        self.send_response(status)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


class Server(ThreadingHTTPServer):
    def handle_error(self, request, client_address):
        if not isinstance(sys.exc_info()[1], (BrokenPipeError, ConnectionResetError)):
            super().handle_error(request, client_address)  # a client that gave up (timeout test) is fine


@pytest.fixture
def server():
    httpd = Server(("127.0.0.1", 0), Handler)
    httpd.daemon_threads = True
    httpd.seen = []
    thread = threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield httpd
    httpd.shutdown()
    httpd.server_close()
    thread.join(5)


def base(server) -> str:
    return f"http://127.0.0.1:{server.server_address[1]}"


def toolbox(tmp_path, *tools: dict) -> Toolbox:
    config = parse({"tools": list(tools)}, tmp_path / "agent.toml")
    return Toolbox(config.settings.tools, None, config.resolve, builtins=())


def light_tool(url: str, **action) -> dict:
    return {"name": "light", "parameters": {"type": "object", "required": ["entity", "room"], "properties": {
        "entity": {"type": "string"}, "room": {"type": "string", "maxLength": 40}}},
        "action": {"kind": "http", "url": url, **action}}


def secret_file(tmp_path, mode=0o600):
    path = tmp_path / "ha-token"
    path.write_text(TOKEN + "\n")
    path.chmod(mode)
    return path


def test_post_sends_the_arguments_as_json_and_returns_the_body(server, tmp_path):
    """The call's arguments are the JSON body; the response body is the output."""
    with toolbox(tmp_path, light_tool(base(server) + "/api/services/light/turn_on")) as tb:
        result = tb.run("light", '{"entity": "light.kitchen", "room": "kitchen"}')
    assert result.ok
    assert json.loads(result.output) == {"done": True, "got": {"entity": "light.kitchen", "room": "kitchen"}}
    request = server.seen[0]
    assert request["method"] == "POST" and request["headers"]["Content-Type"] == "application/json"


def test_url_placeholders_are_url_encoded_and_cannot_escape_the_path(server, tmp_path):
    """../, ?, # and & in an argument are encoded inside their path segment or query value."""
    url = base(server) + "/api/states/{entity}?room={room}"
    with toolbox(tmp_path, light_tool(url, method="GET", body="none")) as tb:
        result = tb.run("light", json.dumps({"entity": "../../admin?x=1#frag", "room": "a&b=c d"}))
    assert result.ok
    assert server.seen[0]["path"] == "/api/states/..%2F..%2Fadmin%3Fx%3D1%23frag?room=a%26b%3Dc%20d"
    assert server.seen[0]["body"] == ""


def test_extra_properties_never_reach_the_body(server, tmp_path):
    """Properties the schema does not declare are refused, so they cannot be smuggled into the body."""
    with toolbox(tmp_path, light_tool(base(server) + "/api/x")) as tb:
        result = tb.run("light", '{"entity": "a", "room": "b", "admin": true}')
    assert not result.ok and "admin" in result.output
    assert server.seen == []


def test_secret_header_is_sent_but_never_logged_or_returned(server, tmp_path, caplog):
    """The token from a 0600 file is sent as the header; logs and outputs never show it."""
    caplog.set_level(logging.DEBUG)
    tool = light_tool(base(server) + "/whoami", headers={"Authorization": "Bearer {secret}"},
                      header_secret_files={"Authorization": str(secret_file(tmp_path))})
    tool["loggable"] = True
    with toolbox(tmp_path, tool) as tb:
        result = tb.run("light", '{"entity": "a", "room": "b"}')
    assert server.seen[0]["headers"]["Authorization"] == f"Bearer {TOKEN}"
    assert result.ok and result.output == "you sent Bearer ***"
    assert TOKEN not in caplog.text and "tool 'light' ok" in caplog.text


def test_secret_file_readable_by_others_is_refused_at_start(tmp_path):
    """A token file with group/other permissions is a SecretError (a ConfigError) naming the fix."""
    tool = light_tool("https://example.invalid/x",
                      header_secret_files={"X-Token": str(secret_file(tmp_path, 0o644))})
    with pytest.raises(SecretError, match="chmod 600"):
        toolbox(tmp_path, tool)


def test_http_error_status_is_an_error_output_with_a_bounded_body(server, tmp_path):
    """A 500 gives the status and the start of the body, short enough to speak."""
    with toolbox(tmp_path, light_tool(base(server) + "/fail")) as tb:
        result = tb.run("light", '{"entity": "a", "room": "b"}')
    error = json.loads(result.output)["error"]
    assert not result.ok and error.startswith("HTTP 500") and "database on fire" in error
    assert len(result.output) < 600


def test_redirects_are_not_followed(server, tmp_path):
    """A redirect could carry the token elsewhere: it is reported, not followed."""
    with toolbox(tmp_path, light_tool(base(server) + "/redirect")) as tb:
        result = tb.run("light", '{"entity": "a", "room": "b"}')
    assert not result.ok and "HTTP 302" in result.output and "example.invalid" in result.output
    assert len(server.seen) == 1


def test_response_body_is_bounded(server, tmp_path):
    """A large response is cut at max_output_bytes and marked."""
    with toolbox(tmp_path, light_tool(base(server) + "/big", max_output_bytes=500)) as tb:
        result = tb.run("light", '{"entity": "a", "room": "b"}')
    assert result.ok and result.output == "z" * 500 + " [output truncated]"


def test_empty_response_reports_the_status(server, tmp_path):
    """204 No Content gives {"ok": true, "status": 204}."""
    with toolbox(tmp_path, light_tool(base(server) + "/empty", method="DELETE", body="none")) as tb:
        result = tb.run("light", '{"entity": "a", "room": "b"}')
    assert result.ok and json.loads(result.output) == {"ok": True, "status": 204}


@pytest.mark.slow
def test_timeout_is_an_error_output(server, tmp_path):
    """A server slower than timeout_s gives an error output near the timeout."""
    with toolbox(tmp_path, light_tool(base(server) + "/slow", timeout_s=0.5)) as tb:
        result = tb.run("light", '{"entity": "a", "room": "b"}')
    assert not result.ok and "timed out after 0.5 s" in result.output
    assert result.duration_s < 2.5


def test_connection_refused_is_an_error_output(tmp_path):
    """Nothing listening: an error output naming the host, no exception."""
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # bound, not listening: connections are refused
        with toolbox(tmp_path, light_tool(f"http://127.0.0.1:{port}/x")) as tb:
            result = tb.run("light", '{"entity": "a", "room": "b"}')
    assert not result.ok and "127.0.0.1" in result.output and "failed" in result.output


def test_literal_braces_in_the_url_survive(server, tmp_path):
    """{{ and }} in the configured URL are literal braces, sent as such (encoded by the client)."""
    url = base(server) + "/api/{{raw}}/{entity}"
    with toolbox(tmp_path, light_tool(url, method="GET", body="none")) as tb:
        assert tb.run("light", '{"entity": "e", "room": "r"}').ok
    assert server.seen[0]["path"] in ("/api/{raw}/e", "/api/%7Braw%7D/e")


def test_token_over_plain_http_to_another_host_is_warned(tmp_path, caplog):
    """A secret header sent over http:// off this machine logs a warning at start (no token shown)."""
    tool = light_tool("http://homeassistant.example:8123/api/x",
                      header_secret_files={"Authorization": str(secret_file(tmp_path))})
    toolbox(tmp_path, tool).close()
    assert "sends a token in clear over http:// to homeassistant.example" in caplog.text
    assert TOKEN not in caplog.text
