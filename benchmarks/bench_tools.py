"""Tool calls: what a call costs beyond its action, and how late a timer rings."""

import logging
import queue
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from agent.config import parse
from agent.tools.timers import Timers
from agent.tools.toolbox import Toolbox
from benchmarks.common import Row, median, percentile


class _Device:
    def __init__(self):
        self.volume = 50
        self.timers = None

    def get_volume(self):
        return self.volume

    def set_volume(self, v):
        self.volume = v

    def set_muted(self, m):
        pass

    def end_conversation(self):
        pass


class _Handler(BaseHTTPRequestHandler):
    def do_POST(self):
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"{}")

    def log_message(self, *args):
        pass


def _ms(values: list[float]) -> float:
    return median(values) * 1000


def _calls(tb: Toolbox, name: str, args: str, n: int) -> list[float]:
    out = []
    for _ in range(n):
        result = tb.run(name, args)
        assert result.ok, result.output
        out.append(result.duration_s)
    return out


def rows() -> list[Row]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True).start()
    url = f"http://127.0.0.1:{httpd.server_address[1]}/api/x"
    params = {"type": "object", "required": ["text"],
              "properties": {"text": {"type": "string", "maxLength": 200}}}
    config = parse({"tools": [
        {"name": "true", "parameters": params, "action": {"kind": "command", "argv": ["/bin/true", "{text}"]}},
        {"name": "py", "action": {"kind": "command", "argv": [sys.executable, "-S", "-c", "pass"]}},
        {"name": "hook", "parameters": params, "action": {"kind": "http", "url": url}},
    ]})
    tb = Toolbox(config.settings.tools, _Device(), config.resolve, builtins=("volume",))
    quiet = logging.getLogger("agent.tools")
    level = quiet.level
    quiet.setLevel(logging.ERROR)  # one log line per call: thousands of calls here
    try:
        builtin = _calls(tb, "volume", '{"action": "set", "level": 40}', 2000)
        invalid = []
        for _ in range(2000):
            invalid.append(tb.run("volume", '{"action": "set", "level": 400}').duration_s)
        command = _calls(tb, "true", '{"text": "hello; rm -rf /"}', 50)
        python = _calls(tb, "py", "{}", 10)
        http = _calls(tb, "hook", '{"text": "hello"}', 200)
    finally:
        quiet.setLevel(level)
        httpd.shutdown()
        httpd.server_close()

    rang: queue.Queue = queue.Queue()
    lateness = []
    with Timers(lambda t: rang.put((t, time.monotonic()))) as timers:
        for _ in range(20):
            timers.set(0.05)
            t, at = rang.get(timeout=2)
            lateness.append(at - t.due)
            timers.stop_ringing()

    return [
        Row("built-in call (validate + run), median", f"{_ms(builtin):.3f} ms", "<= 1 ms", _ms(builtin) <= 1),
        Row("refused call (schema error), median", f"{_ms(invalid):.3f} ms", "<= 1 ms", _ms(invalid) <= 1),
        Row("command tool /bin/true, median", f"{_ms(command):.1f} ms", "<= 50 ms", _ms(command) <= 50),
        Row("command tool python -S, median", f"{_ms(python):.0f} ms", "-", None),
        Row("http tool, loopback POST, median", f"{_ms(http):.2f} ms", "<= 20 ms", _ms(http) <= 20),
        Row("timer rings late by, p95", f"{percentile(lateness, 95) * 1000:.1f} ms", "<= 50 ms",
            percentile(lateness, 95) <= 0.05),
    ]
