"""A small OpenAI-compatible server for tests: the tiny model behind ``/v1/chat/completions``.

It lets the HTTP backend be tested against a real socket, real JSON and real timeouts, on
127.0.0.1 only, in about a second. Faults are injected by arrival order, so a test knows exactly
how many retries the client must have made:

* the first ``rate_limit`` requests get ``429`` with ``Retry-After``;
* the next ``server_error`` get ``500``;
* the next ``slow`` sleep ``slow_s`` (longer than the client's timeout) before answering;
* the first ``null_content`` answer with ``"content": null``; with ``drip_s`` every answer's body
  is sent one byte at a time (each read of the client gets data in time, the whole never does),
  with ``drip_headers_s`` its status line and headers are.

Every request's headers and body are recorded (in memory only) so a test can check that the
``Authorization`` header carried the key, and the largest number of requests in flight at once is
measured so a test can see that concurrency really overlaps requests. The server stops by itself
after ``max_lifetime_s`` even if a test forgets to stop it.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from persrm_utils.generation.local import TransformersBackend
from persrm_utils.generation.requests import GenRequest


def load_varied_tiny(root: Path) -> tuple[Any, Any]:
    """The tiny model and tokenizer, with weights re-drawn wider (std 0.3) so greedy text varies.

    As built, the tiny model's greedy answer is the same token over and over, which would make
    "batched equals one at a time" true of almost any bug. Wider weights give varied tokens.
    """
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from persrm_utils.models.tiny import tiny_model_dir

    folder = tiny_model_dir(root=root)
    tokenizer = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForCausalLM.from_pretrained(folder)
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() > 1:
                p.copy_(torch.randn(p.shape, generator=gen) * 0.3)
    return model.eval(), tokenizer


@dataclass
class Faults:
    """What the server does wrong, and to which requests (counted from 0 in arrival order)."""

    rate_limit: int = 0
    retry_after: str | None = "0"
    server_error: int = 0
    slow: int = 0
    slow_s: float = 3.0
    delay_s: float = 0.0  # every request waits this long first, so overlap can be observed
    require_key: str | None = None  # 401 unless "Authorization: Bearer <require_key>"
    echo_auth_in_401: bool = False  # a careless server: repeats the header in its 401 body
    status: int | None = None  # answer every request with this status (404, 503 ...)
    null_content: int = 0  # the first N requests get 200 with "content": null
    drip_s: float = 0.0  # send each 200 body one byte at a time, this many seconds apart
    drip_headers_s: float = 0.0  # the same for the status line and headers of a 200


class _Handler(BaseHTTPRequestHandler):
    server: _HTTPServer

    def log_message(self, format: str, *args: Any) -> None:  # quiet: tests read stderr
        pass

    def do_POST(self) -> None:
        stub = self.server.stub
        n = stub._enter(dict(self.headers))
        self._left = False
        try:
            self._answer(stub, n)
        except OSError:  # the client gave up (timeout) and closed the socket: nothing to do
            pass
        finally:
            self._leave()

    def _leave(self) -> None:
        """Count this request out before its body goes out: once the client has the whole
        answer it may send the next one at once, which must not look like overlap."""
        if not self._left:
            self._left = True
            self.server.stub._leave()

    def _answer(self, stub: StubServer, n: int) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = json.loads(self.rfile.read(length) or b"{}")
        stub.bodies.append(body)
        f = stub.faults
        if self.path.rstrip("/") != "/v1/chat/completions":
            return self._send(404, {"error": {"message": f"no route {self.path}"}})
        if f.delay_s:
            stub.stopping.wait(f.delay_s)
        auth = self.headers.get("Authorization")
        if f.require_key is not None and auth != f"Bearer {f.require_key}":
            said = f": {auth}" if f.echo_auth_in_401 else ""
            msg = f"Incorrect API key provided{said}"
            return self._send(401, {"error": {"message": msg, "type": "invalid_request_error"}})
        if f.status is not None:
            return self._send(f.status, {"error": {"message": f"injected {f.status}"}})
        if n < f.rate_limit:
            headers = {"Retry-After": f.retry_after} if f.retry_after is not None else {}
            return self._send(429, {"error": {"message": "rate limited"}}, headers)
        if n < f.rate_limit + f.server_error:
            return self._send(500, {"error": {"message": "internal error"}})
        if n < f.rate_limit + f.server_error + f.slow:
            stub.stopping.wait(f.slow_s)
        answer = stub._complete(body, n)
        if n < f.null_content:
            answer["choices"][0]["message"]["content"] = None
        if f.drip_headers_s:
            return self._drip_headers(answer, f.drip_headers_s)
        self._send(200, answer, drip_s=f.drip_s)

    def _send(
        self, status: int, payload: dict, headers: dict[str, str] | None = None, drip_s=0.0
    ) -> None:
        data = json.dumps(payload).encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self._leave()
        if not drip_s:
            self.wfile.write(data)
            return
        for i in range(len(data)):  # a server that drips: every read gets a byte in time
            if self.server.stub.stopping.wait(drip_s):
                return
            self.wfile.write(data[i : i + 1])
            self.wfile.flush()

    def _drip_headers(self, payload: dict, drip_s: float) -> None:
        """A 200 whose status line and headers come one byte at a time, then the body at once."""
        data = json.dumps(payload).encode("utf-8")
        head = (
            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(data)}\r\nX-Padding: {'.' * 64}\r\n\r\n"
        ).encode("ascii")
        self._leave()
        for i in range(len(head)):
            if self.server.stub.stopping.wait(drip_s):
                return
            self.wfile.write(head[i : i + 1])
            self.wfile.flush()
        self.wfile.write(data)


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    stub: StubServer


class StubServer:
    """Serve ``backend`` (normally a TransformersBackend on the tiny model) on 127.0.0.1."""

    def __init__(
        self, backend: TransformersBackend, faults: Faults | None = None, max_lifetime_s=60.0
    ) -> None:
        self.backend = backend
        self.faults = faults or Faults()
        self.max_lifetime_s = max_lifetime_s
        self.headers: list[dict[str, str]] = []
        self.bodies: list[dict] = []
        self.count = 0
        self.in_flight = 0
        self.max_in_flight = 0
        self.stopping = threading.Event()
        self._lock = threading.Lock()
        self._gen_lock = threading.Lock()  # one forward pass at a time; HTTP still overlaps
        self._httpd = _HTTPServer(("127.0.0.1", 0), _Handler)
        self._httpd.stub = self
        self.port = self._httpd.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}/v1"
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._watchdog = threading.Timer(max_lifetime_s, self.stop)
        self._watchdog.daemon = True
        self._stopped = False

    def start(self) -> StubServer:
        self._thread.start()
        self._watchdog.start()
        return self

    def stop(self) -> None:
        with self._lock:
            if self._stopped:
                return
            self._stopped = True
        self.stopping.set()
        self._watchdog.cancel()
        self._httpd.shutdown()
        self._httpd.server_close()

    def __enter__(self) -> StubServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _enter(self, headers: dict[str, str]) -> int:
        with self._lock:
            n = self.count
            self.count += 1
            self.headers.append(headers)
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
            return n

    def _leave(self) -> None:
        with self._lock:
            self.in_flight -= 1

    def _complete(self, body: dict, n: int) -> dict:
        """The OpenAI response shape, with the tiny model's greedy answer."""
        req = GenRequest(
            body["messages"],
            max_new_tokens=int(body.get("max_tokens") or 16),
            temperature=0.0,
        )
        with self._gen_lock:
            res = self.backend.generate([req])[0]
        tok = self.backend.tokenizer
        prompt = tok.apply_chat_template(req.messages, tokenize=False, add_generation_prompt=True)
        prompt_tokens = len(tok(prompt, add_special_tokens=False)["input_ids"])
        completion_tokens = len(tok(res.text, add_special_tokens=False)["input_ids"])
        return {
            "id": f"chatcmpl-stub-{n}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": body.get("model", "stub"),
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": res.text},
                    "finish_reason": res.finish_reason,
                }
            ],
            "usage": {
                "prompt_tokens": prompt_tokens,
                "completion_tokens": completion_tokens,
                "total_tokens": prompt_tokens + completion_tokens,
            },
        }
