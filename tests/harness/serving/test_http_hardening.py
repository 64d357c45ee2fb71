"""``harness serve`` against clients that misbehave on purpose: deep JSON, no Content-Type,
id floods, slow heads and bodies, id rotation (answered by API keys)."""

from __future__ import annotations

import socket
import time
from urllib.parse import urlsplit

import numpy as np
import pytest

from harness.errors import ConfigError
from harness.serving.http.app import ServeLimits, make_app
from harness.serving.http.background import serving
from harness.serving.http.client import HttpOracle, ServerError
from harness.serving.http.clients import ApiKeys, ClientTable
from harness.serving.http.wire import WireError
from tests.harness.serving.test_http import octet, post, target

KEY_A, KEY_B = "alice-key-0123456789abcdef", "bob-key-0123456789abcdef"


@pytest.fixture
def hardened(tiny_victim, tmp_path):
    limits = ServeLimits(header_timeout_s=0.3, body_timeout_s=0.3, max_clients=4)
    with serving(make_app(target(tiny_victim), limits)) as url:
        yield url


@pytest.mark.parametrize("depth", [100_000, 9])
def test_deep_json_is_a_400_not_a_server_error(hardened, depth):
    body = b'{"inputs": ' + b"[" * depth + b"0.5" + b"]" * depth + b"}"
    status, doc = post(hardened, body, {"Content-Type": "application/json", "X-Client-Id": "c"})
    assert status == 400 and "nested" in doc["error"]


def test_a_query_without_content_type_is_refused_uncharged(hardened, tiny_victim):
    body, headers = octet(tiny_victim.data.attacker.x[:1])
    del headers["Content-Type"]
    status, doc = post(hardened, body, headers)
    assert status == 415 and "missing header Content-Type" in doc["error"]
    assert HttpOracle(hardened, "c1").queries_used == 0


def _raw(url: str) -> socket.socket:
    parts = urlsplit(url)
    return socket.create_connection((parts.hostname, parts.port), timeout=5)


def test_a_slow_request_head_is_cut_off(hardened):
    with _raw(hardened) as sock:
        sock.sendall(b"POST /query HTTP/1.1\r\nHost: x\r\n")  # and never the rest
        start = time.monotonic()
        assert sock.recv(1024) == b""  # closed by the server
        assert time.monotonic() - start < 4


def test_a_slow_body_is_a_408(hardened):
    with _raw(hardened) as sock:
        sock.sendall(b"POST /query HTTP/1.1\r\nHost: x\r\nX-Client-Id: slow\r\n"
                     b"Content-Type: application/octet-stream\r\nX-Shape: 1,1,8,8\r\n"
                     b"Content-Length: 256\r\n\r\n" + b"\0" * 10)
        answer = b""
        while b"}" not in answer and (chunk := sock.recv(4096)):
            answer += chunk
    assert answer.startswith(b"HTTP/1.1 408") and b"took longer than" in answer


def test_idle_client_ids_are_forgotten_so_newcomers_get_in(tiny_victim):
    table = ClientTable(lambda name: name, rate=100, burst=100, max_clients=2, idle_s=0.2,
                        new_rate=100, new_burst=100)
    table.admit("a")
    table.admit("b")
    with pytest.raises(WireError, match="already serves 2 clients") as info:
        table.admit("c")
    assert info.value.status == 429
    time.sleep(0.25)
    table.admit("b")  # b is active again, a is idle
    table.admit("c")
    assert table.oracle("a") is None and table.oracle("b") == "b" and len(table) == 2


def test_new_client_ids_are_rate_limited():
    table = ClientTable(lambda name: name, rate=100, burst=100, max_clients=100,
                        new_rate=0.1, new_burst=3)
    for name in "abc":
        table.admit(name)
    with pytest.raises(WireError, match="new client ids are rate-limited") as info:
        table.admit("d")
    assert info.value.status == 429
    table.admit("a")  # known ids are unaffected


def write_keys(tmp_path, text: str):
    path = tmp_path / "keys.txt"
    path.write_text(text)
    return path


@pytest.mark.parametrize(("text", "message"), [
    ("alice\n", "expected 'NAME KEY'"),
    ("al/ice " + KEY_A, "name 'al/ice' must be"),
    ("alice short", "shorter than 16"),
    (f"alice {KEY_A}\nalice {KEY_B}\n", "appears twice"),
    ("# nothing\n", "holds no 'NAME KEY' line"),
])
def test_bad_key_files_are_refused_naming_the_line(tmp_path, text, message):
    with pytest.raises(ConfigError, match=message):
        ApiKeys.load(write_keys(tmp_path, text))


def test_api_keys_make_budgets_hold_against_id_rotation(tiny_victim, tmp_path):
    keys = ApiKeys.load(write_keys(tmp_path, f"# operator's keys\nalice {KEY_A}\nbob {KEY_B}\n"))
    x = tiny_victim.data.attacker.x
    with serving(make_app(target(tiny_victim), ServeLimits(), keys)) as url:
        status, doc = post(url, *octet(x[:1]))
        assert status == 401 and "Authorization: Bearer" in doc["error"]
        status, _ = post(url, *octet(x[:1], Authorization="Bearer not-a-key-0123456789"))
        assert status == 401
        used = [HttpOracle(url, f"rotated-{i}", api_key=KEY_A, per_sample=False)
                .query(x[:3]) for i in range(3)]
        alice = HttpOracle(url, "anything", api_key=KEY_A)
        assert alice.queries_used == 9 and len(used) == 3  # one budget, whatever the id
        assert HttpOracle(url, "alice", api_key=KEY_B).queries_used == 0
        with pytest.raises(ServerError, match="401"):
            HttpOracle(url, "alice").query(np.asarray(x[:1]))
