"""The OpenAI-compatible backend against a real HTTP server on 127.0.0.1 (the tiny model)."""

from __future__ import annotations

import logging
import pickle
import time
import traceback
import uuid

import pytest
from openai_stub_server import Faults, StubServer, load_varied_tiny

from persrm_utils.errors import ConfigError, PersRMError
from persrm_utils.generation.cache import CachedGenerator
from persrm_utils.generation.local import TransformersBackend
from persrm_utils.generation.openai_compat import (
    REDACTED,
    OpenAIBackend,
    _endpoint,
    _parse_retry_after,
)
from persrm_utils.generation.requests import GenRequest

KEY_ENV = "PERSRM_TEST_API_KEY"


def requests(n: int, max_new_tokens: int = 6) -> list[GenRequest]:
    return [
        GenRequest(
            [{"role": "user", "content": f"Request {i}: the market opened higher on Monday."}],
            max_new_tokens=max_new_tokens,
            meta={"i": i},
        )
        for i in range(n)
    ]


@pytest.fixture(scope="module")
def local(tmp_path_factory):
    """The tiny model in-process: what the server runs, and the reference for its answers."""
    model, tokenizer = load_varied_tiny(tmp_path_factory.mktemp("cache"))
    return TransformersBackend(model, tokenizer, batch_size=8)


@pytest.fixture
def serve(local):
    """Start a stub server with the given faults; every one is stopped when the test ends."""
    started: list[StubServer] = []

    def start(**faults) -> StubServer:
        server = StubServer(local, Faults(**faults), max_lifetime_s=60).start()
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


def client(server: StubServer, **kwargs) -> OpenAIBackend:
    kwargs = {"api_key_env": KEY_ENV, "backoff_base_s": 0.01, "max_retries": 10, **kwargs}
    return OpenAIBackend(server.url, "tiny-stub", **kwargs)


def test_every_answer_arrives_despite_rate_limits_errors_and_timeouts(serve, local, monkeypatch):
    key = f"sk-test-{uuid.uuid4()}"
    monkeypatch.setenv(KEY_ENV, key)
    server = serve(rate_limit=3, server_error=2, slow=2, slow_s=4.0, require_key=key)
    backend = client(server, concurrency=4, timeout_s=1.5)
    reqs = requests(10)

    results = backend.generate(reqs)

    assert [r.finish_reason for r in results] != ["error"] * 10
    assert all(r.finish_reason in ("stop", "length") for r in results)
    assert [r.key for r in results] == [r.key for r in reqs]
    assert [r.meta for r in results] == [r.meta for r in reqs]
    # What came over HTTP is what the same model says in-process.
    assert [r.text for r in results] == [r.text for r in local.generate(reqs)]
    stats = backend.stats
    assert stats.retries == 3 + 2 + 2 == sum(r.attempts - 1 for r in results)
    assert stats.by_status["429"] == 3 and stats.by_status["500"] == 2
    assert stats.by_status["timeout"] == 2 and stats.by_status["200"] == 10
    assert stats.requests == 17 and stats.failures == 0
    assert server.count == 17
    assert {h["Authorization"] for h in server.headers} == {f"Bearer {key}"}
    assert server.bodies[0]["max_tokens"] == 6 and server.bodies[0]["model"] == "tiny-stub"


def test_retry_after_is_honoured(serve):
    server = serve(rate_limit=1, retry_after="0.6")
    backend = client(server, backoff_base_s=0.0)
    start = time.perf_counter()
    (res,) = backend.generate(requests(1))
    assert time.perf_counter() - start >= 0.6
    assert res.attempts == 2 and backend.stats.retries == 1


def test_parse_retry_after_accepts_seconds_and_dates():
    assert _parse_retry_after("2") == 2.0
    assert _parse_retry_after(None) is None and _parse_retry_after("soon") is None
    assert _parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT") == 0.0  # in the past: go now
    assert _parse_retry_after("100000") == 300.0  # capped


def test_endpoint_accepts_the_usual_spellings():
    full = "http://127.0.0.1:8000/v1/chat/completions"
    for url in (
        "http://127.0.0.1:8000",
        "http://127.0.0.1:8000/",
        "http://127.0.0.1:8000/v1",
        full,
    ):
        assert _endpoint(url) == full


def test_401_stops_at_once_with_the_fix_and_without_the_key(serve, monkeypatch):
    wrong = f"sk-test-{uuid.uuid4()}"
    monkeypatch.setenv(KEY_ENV, wrong)
    server = serve(require_key="sk-the-right-one", echo_auth_in_401=True)
    backend = client(server, concurrency=1)
    with pytest.raises(PersRMError) as info:
        backend.generate(requests(1))
    msg = str(info.value)
    assert "401" in msg and KEY_ENV in msg
    assert wrong not in msg and REDACTED in msg  # the server echoed it; we redacted it
    assert server.count == 1 and backend.stats.retries == 0


def test_404_names_base_url_and_model(serve):
    server = serve(status=404)
    with pytest.raises(PersRMError, match=r"404.*base_url"):
        client(server).generate(requests(1))


def test_failed_requests_come_back_as_errors_and_are_retried_next_run(serve, tmp_path):
    server = serve(server_error=2)
    backend = client(server, max_retries=1)
    gen = CachedGenerator(backend, tmp_path / "cache.jsonl")
    (res,) = gen.generate(requests(1), progress=False)
    assert res.finish_reason == "error" and "HTTP 500" in res.error and res.attempts == 2
    assert backend.stats.failures == 1 and gen.cache_stats.errors == 1
    assert (tmp_path / "cache.jsonl").read_text() == ""  # an error is never cached

    (res,) = gen.generate(requests(1), progress=False)
    assert res.finish_reason in ("stop", "length")
    assert gen.cache_stats.generated == 1
    assert len((tmp_path / "cache.jsonl").read_text().splitlines()) == 1


# The two deadline tests below pit a 1 s deadline against a server whose answer would take more
# than 30 s, each byte arriving well within a per-read timeout. Wall time is asserted only with an
# order-of-magnitude gap (under 10 s against 30 s or more), so a busy machine cannot fail them.
DRIP_S = 0.25  # between two bytes: far below the 1 s per-read timeout


def test_timeout_is_a_deadline_for_the_whole_body_not_per_read(serve):
    server = serve(drip_s=DRIP_S)  # the body (hundreds of bytes) would take over a minute
    backend = client(server, timeout_s=1.0, max_retries=1)
    start = time.perf_counter()
    (res,) = backend.generate(requests(1))
    took = time.perf_counter() - start
    assert res.finish_reason == "error" and res.attempts == 2
    assert res.error == "no complete answer within 1.0 s (after 2 attempts)"
    assert took < 10, f"two attempts with a 1 s deadline took {took:.1f} s"
    assert backend.stats.by_status["timeout"] == 2 and backend.stats.by_status["200"] == 0


def test_timeout_is_a_deadline_that_covers_dripped_headers(serve):
    # Status line and headers (about 150 bytes) at one byte per 0.25 s: over 30 s in all. httpx's
    # per-read timeout never fires, and no body is read before the headers are complete, so only
    # a deadline over the whole request (connect, headers, body) can stop it.
    server = serve(drip_headers_s=DRIP_S)
    backend = client(server, timeout_s=1.0, max_retries=0)
    start = time.perf_counter()
    (res,) = backend.generate(requests(1))
    took = time.perf_counter() - start
    assert res.finish_reason == "error" and res.attempts == 1
    assert res.error == "no complete answer within 1.0 s (after 1 attempts)"
    assert took < 10, f"one attempt with a 1 s deadline took {took:.1f} s"
    assert backend.stats.by_status["timeout"] == 1


def test_the_deadline_leaves_other_threads_and_later_requests_alone(serve):
    # The deadline belongs to the request of one worker thread: a slow one times out while the
    # others, on the same client and connections, answer; the next call starts a fresh clock.
    server = serve(slow=1, slow_s=30.0)
    backend = client(server, timeout_s=1.0, max_retries=0, concurrency=3)
    results = backend.generate(requests(3))
    assert [r.finish_reason == "error" for r in results].count(True) == 1
    assert sum(r.finish_reason in ("stop", "length") for r in results) == 2
    (again,) = backend.generate(requests(1))
    assert again.finish_reason in ("stop", "length")


def test_content_null_is_a_failed_generation_retried_and_never_cached(serve, tmp_path):
    server = serve(null_content=2)
    backend = client(server, max_retries=1)
    gen = CachedGenerator(backend, tmp_path / "cache.jsonl")
    (res,) = gen.generate(requests(1), progress=False)
    assert res.finish_reason == "error" and res.attempts == 2
    assert "content null, no text" in res.error
    assert (tmp_path / "cache.jsonl").read_text() == ""  # not cached as an empty success

    (res,) = gen.generate(requests(1), progress=False)  # the third request has text again
    assert res.finish_reason in ("stop", "length") and res.text
    assert len((tmp_path / "cache.jsonl").read_text().splitlines()) == 1


def test_a_dead_server_stops_the_run_instead_of_timing_out_every_request(serve):
    server = serve(status=503)
    backend = client(server, concurrency=1, max_retries=0, max_consecutive_failures=3)
    with pytest.raises(PersRMError, match="3 requests in a row"):
        backend.generate(requests(10))
    assert 3 <= server.count <= 4


def test_concurrency_overlaps_requests(serve):
    server = serve(delay_s=0.3)
    results = client(server, concurrency=4).generate(requests(8))
    assert len(results) == 8 and server.max_in_flight == 4

    server = serve(delay_s=0.2)
    client(server, concurrency=1).generate(requests(3))
    assert server.max_in_flight == 1


def test_missing_key_is_an_error_for_remote_servers_only(serve, monkeypatch):
    monkeypatch.delenv(KEY_ENV, raising=False)
    remote = OpenAIBackend("https://api.example.invalid/v1", "m", api_key_env=KEY_ENV)
    with pytest.raises(ConfigError, match=KEY_ENV):
        remote.generate(requests(1))  # raised before any connection is attempted

    server = serve()
    (res,) = client(server).generate(requests(1))
    assert res.finish_reason in ("stop", "length")
    assert "Authorization" not in server.headers[0]


def test_bad_settings_are_config_errors():
    with pytest.raises(ConfigError, match="http"):
        OpenAIBackend("127.0.0.1:8000", "m")
    with pytest.raises(ConfigError, match="credentials"):
        OpenAIBackend("http://user:secret@127.0.0.1:8000/v1", "m")
    with pytest.raises(ConfigError):
        OpenAIBackend("http://127.0.0.1:8000/v1", "m", concurrency=0)


def test_the_key_leaks_nowhere(serve, tmp_path, monkeypatch, caplog, capsys):
    key = f"sk-test-{uuid.uuid4()}"
    monkeypatch.setenv(KEY_ENV, key)
    caplog.set_level(logging.DEBUG)  # everything, including httpx and httpcore
    server = serve(rate_limit=1, server_error=1, require_key=key)
    run = tmp_path / "run"
    backend = client(server, concurrency=2)
    gen = CachedGenerator(backend, run / "generation" / "cache.jsonl")
    results = gen.generate(requests(4), progress=True)
    assert all(r.finish_reason != "error" for r in results)
    assert {h["Authorization"] for h in server.headers} == {f"Bearer {key}"}  # it was sent

    # A wrong key against a server that echoes it back, through the same cache.
    wrong = f"sk-test-{uuid.uuid4()}"
    monkeypatch.setenv(KEY_ENV, wrong)
    with pytest.raises(PersRMError) as info:
        gen.generate(requests(6), progress=False)
    server.faults.echo_auth_in_401 = True
    with pytest.raises(PersRMError) as echoed:
        CachedGenerator(client(server), run / "other.jsonl").generate(requests(1), progress=False)

    out = capsys.readouterr()
    places = {
        "logs": caplog.text,
        "stdout": out.out,
        "stderr": out.err,
        "repr": repr(backend) + repr(gen) + repr(vars(backend)),
        "results": "".join(r.model_dump_json() for r in results),
        "errors": str(info.value) + repr(info.value) + str(echoed.value) + repr(echoed.value),
        "pickle": pickle.dumps(backend).decode("latin-1"),
        # What pytest -l, rich or an error tracker would print: the local variables of every
        # frame the error came through (but this test's own, which holds the key on purpose).
        "traceback locals": "".join(
            repr(value)
            for frame, _ in traceback.walk_tb(info.value.__traceback__)
            if frame.f_code.co_filename != __file__
            for value in frame.f_locals.values()
        ),
    }
    for secret in (key, wrong):
        for where, text in places.items():
            assert secret not in text, f"the key leaked into {where}"
        for path in run.rglob("*"):
            if path.is_file():
                assert secret.encode() not in path.read_bytes(), f"the key leaked into {path}"
    assert REDACTED in str(echoed.value)
    assert "HTTP Request" in caplog.text and "retrying" in caplog.text  # the logs were captured
    assert len((run / "generation" / "cache.jsonl").read_text().splitlines()) == 4
