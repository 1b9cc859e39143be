"""A local HTTP server on loopback that records every request it receives.

It stands in for PagerDuty, Slack and a webhook endpoint: tests point the channels at
`recorder.url("/v2/enqueue")`, send, then assert on what arrived (path, headers, body).
Answers can be scripted per path, e.g. one 429 with Retry-After before the 202:

    with http_recorder() as rec:
        rec.script("/v2/enqueue", [(429, {"Retry-After": "0"}, b"slow down")])
        ...
        assert [r.status for r in rec.requests] == [429, 202]
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

# What each kind of endpoint answers when nothing is scripted (the real services' bodies).
DEFAULT_ANSWERS: dict[str, tuple[int, dict[str, str], bytes]] = {
    "/v2/enqueue": (
        202,
        {"Content-Type": "application/json"},
        b'{"status":"success","message":"Event processed"}',
    ),
    "/slack": (200, {"Content-Type": "text/plain"}, b"ok"),
}
FALLBACK_ANSWER = (200, {"Content-Type": "application/json"}, b'{"ok":true}')


@dataclass(frozen=True)
class RecordedRequest:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    status: int  # what the recorder answered

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class HttpRecorder:
    base_url: str
    requests: list[RecordedRequest] = field(default_factory=list)
    _scripts: dict[str, list[tuple[int, dict[str, str], bytes]]] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def url(self, path: str) -> str:
        return self.base_url + path

    def script(self, path: str, answers: list[tuple[int, dict[str, str], bytes]]) -> None:
        """Answer the next requests to `path` with these, in order, then the default."""
        with self._lock:
            self._scripts.setdefault(path, []).extend(answers)

    def to(self, path: str) -> list[RecordedRequest]:
        """The requests received on `path` that were accepted (2xx)."""
        return [r for r in self.requests if r.path == path and 200 <= r.status < 300]

    def clear(self) -> None:
        with self._lock:
            self.requests.clear()
            self._scripts.clear()

    def _answer(self, path: str) -> tuple[int, dict[str, str], bytes]:
        with self._lock:
            queued = self._scripts.get(path)
            if queued:
                return queued.pop(0)
        return DEFAULT_ANSWERS.get(path, FALLBACK_ANSWER)

    def _record(self, request: RecordedRequest) -> None:
        with self._lock:
            self.requests.append(request)


def _handler(recorder: HttpRecorder) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length)
            status, headers, answer = recorder._answer(self.path)
            recorder._record(
                RecordedRequest("POST", self.path, dict(self.headers.items()), body, status)
            )
            self.send_response(status)
            for name, value in headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(answer)))
            self.end_headers()
            self.wfile.write(answer)

        def log_message(self, format: str, *args: Any) -> None:
            # Quiet: the tests read `recorder.requests`, not stderr.
            return

    return Handler


@contextmanager
def http_recorder() -> Iterator[HttpRecorder]:
    """Start the recorder on 127.0.0.1 on a free port; stop it on exit."""
    recorder = HttpRecorder(base_url="")
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(recorder))
    host, port = server.server_address[:2]
    recorder.base_url = f"http://{host}:{port}"
    thread = threading.Thread(target=server.serve_forever, name="http-recorder", daemon=True)
    thread.start()
    try:
        yield recorder
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
