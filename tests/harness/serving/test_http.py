"""``harness serve``'s app and ``HttpOracle`` on loopback, with the kit's tiny victim.

The app runs in a thread (uvicorn on a free port); raw requests check the HTTP errors,
``HttpOracle`` checks the oracle interface an attack sees.
"""

from __future__ import annotations

import http.client
import io
import json
from urllib.parse import urlsplit

import numpy as np
import pytest

from harness.errors import BudgetExhaustedError, InvalidQueryError, QueryError
from harness.plugins.toolbox import Toolbox
from harness.protocol import AttackContext
from harness.serving.http.app import Health, ServeLimits, ServeTarget, make_app
from harness.serving.http.background import serving
from harness.serving.http.client import HttpOracle
from harness.serving.oracle import Oracle
from harness.stages import Defense
from harness.testing import tiny_endpoint
from harness.testing.fixtures import default_registry
from harness.timing.models import AnalyticTiming

BUDGET = 40
ANSWER_KEYS = {"outputs", "admitted", "server_compute_s", "queries_used", "budget_left"}


class Explodes(Defense):
    """A defense whose monitor raises (a server-side failure)."""

    name = "explodes"

    def admit(self, batch):
        raise RuntimeError("secret internal detail")


def target(victim, *, output="probs", defense=None, pace=True) -> ServeTarget:
    data = victim.data

    def new_oracle(client_id: str) -> Oracle:
        endpoint = tiny_endpoint(victim, defense() if defense else None, output=output,
                                 timing=AnalyticTiming(), client_id=client_id)
        return Oracle(endpoint, BUDGET, output, data.input_shape, data.input_range)

    health = Health(victim.name, data.input_shape, data.num_classes, data.input_range, output,
                    BUDGET)
    return ServeTarget(health, new_oracle, pace=pace)


@pytest.fixture
def server(tiny_victim):
    app = make_app(target(tiny_victim), ServeLimits(max_body_bytes=20_000, max_json_bytes=8_000,
                                                    max_batch=32))
    with serving(app) as url:
        yield url, app


def post(url: str, body: bytes, headers: dict[str, str], path: str = "/query",
         method: str = "POST") -> tuple[int, dict]:
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
    conn.request(method, path, body=body, headers=headers)
    response = conn.getresponse()
    raw = response.read()
    conn.close()
    assert b"Traceback" not in raw and b'File "' not in raw
    return response.status, json.loads(raw)


def octet(x: np.ndarray, client: str = "c1", **extra: str) -> tuple[bytes, dict[str, str]]:
    x = np.ascontiguousarray(x, dtype=np.float32)
    return x.tobytes(), {"Content-Type": "application/octet-stream", "X-Client-Id": client,
                         "X-Shape": ",".join(map(str, x.shape)), **extra}


def test_health_says_the_task_and_nothing_about_exits(server, tiny_victim):
    url, _ = server
    status, doc = post(url, b"", {}, path="/health", method="GET")
    assert status == 200 and doc["status"] == "ok"
    assert doc["victim"] == "tiny" and doc["input_shape"] == [1, 8, 8]
    assert doc["num_classes"] == 10 and doc["input_range"] == [0.0, 1.0]
    assert doc["output"] == "probs" and doc["budget"] == BUDGET
    text = json.dumps(doc).lower()
    assert "threshold" not in text and "exit" not in text


def test_http_oracle_answers_as_the_in_process_oracle(server, tiny_victim):
    url, app = server
    x = tiny_victim.data.attacker.x[:6]
    with HttpOracle(url, "alice") as oracle:
        assert (oracle.budget, oracle.output, oracle.input_shape) == (BUDGET, "probs", (1, 8, 8))
        res = oracle.query(x)
        assert oracle.queries_used == 6 and oracle.budget_left == BUDGET - 6
        batch = HttpOracle(url, "alice", per_sample=False).query(x[:2])
    local = Oracle(tiny_endpoint(tiny_victim), 10, "probs", (1, 8, 8), (0.0, 1.0))
    # One input per request vs one batch: float32 kernels differ in the last bits only.
    np.testing.assert_allclose(res.outputs, local.query(x).outputs, rtol=0, atol=1e-7)
    assert res.admitted.all() and np.all(res.latency_s > 0) and len(res.latency_s) == 6
    assert len(batch.latency_s) == 2 and batch.latency_s[0] == batch.latency_s[1]
    # The server paces answers: a client never waits less than the latency that was served.
    served = app.state.service.clients.oracle("alice").served_latencies()[:6]
    assert np.all(res.latency_s >= served)
    with pytest.raises(QueryError, match="remote server"):
        HttpOracle(url, "alice").true_exits_for_reference()


def test_budget_enforced_per_client_and_refusals_not_charged(server, tiny_victim):
    url, _ = server
    x = tiny_victim.data.attacker.x
    a, b = HttpOracle(url, "a", per_sample=False), HttpOracle(url, "b", per_sample=False)
    a.query(x[:30])
    status, doc = post(url, *octet(x[:11], client="a"))
    assert status == 429 and "exceeds the budget" in doc["error"] and "10 left" in doc["error"]
    with pytest.raises(BudgetExhaustedError):
        a.query(x[:11])
    assert a.queries_used == 30
    b.query(x[:30])  # another client's budget is its own
    assert b.queries_used == 30
    resumed = HttpOracle(url, "a")  # a reconnecting client resumes its count
    assert resumed.queries_used == 30 and resumed.budget_left == 10
    status, doc = post(url, *octet(x[:10], client="a"))
    assert status == 200 and doc["budget_left"] == 0 and set(doc) == ANSWER_KEYS


@pytest.mark.integration
@pytest.mark.parametrize("body, headers, status, needle", [
    (b"\0" * 256, {"X-Shape": "1,1,8,8"}, 400, "does not match (n, 1, 8, 8)"),
    (np.full((1, 1, 8, 8), np.nan, np.float32).tobytes(), {"X-Shape": "1,1,8,8"}, 400, "NaN"),
    (np.full((1, 1, 8, 8), 3, np.float32).tobytes(), {"X-Shape": "1,1,8,8"}, 400,
     "outside the input range [0.0, 1.0]"),
    (b"\0" * 10, {"X-Shape": "1,1,8,8"}, 400, "needs 256"),
    (b"\0" * 256, {"X-Shape": "one"}, 400, "comma-separated list of integers"),
    (b"\0" * 256, {}, 400, "needs the header X-Shape"),
    (b"\0" * 512, {"X-Shape": "1,1,8,8", "X-Dtype": "int64"}, 400, "float32 (default) or float64"),
    (b"\0" * 256, {"X-Shape": "1,1,8,8", "Content-Type": "text/csv"}, 415, "is not accepted"),
    (b"[1,2]", {"Content-Type": "application/json"}, 400, '{"inputs": [...]}'),
    (b'{"inputs": [[1, "a"]]}', {"Content-Type": "application/json"}, 400, "nested lists"),
    (b"not npy", {"Content-Type": "application/x-npy"}, 400, "readable .npy"),
    (b"\0" * 256, {"X-Shape": "1,1,8,8", "X-Client-Id": "bad id!"}, 400, "is not allowed"),
])
def test_bad_input_is_400_with_a_message_and_not_charged(server, body, headers, status, needle):
    url, app = server
    sent = {"Content-Type": "application/octet-stream", "X-Client-Id": "c1", **headers}
    if "X-Shape" in sent and sent["X-Shape"] == "1,1,8,8" and needle.startswith("does not"):
        sent["X-Shape"] = "1,1,16,4"
    got, doc = post(url, body, sent)
    assert got == status and needle in doc["error"], doc
    oracle = app.state.service.clients.oracle("c1")
    assert oracle is None or oracle.queries_used == 0


def test_json_and_npy_bodies(server, tiny_victim):
    url, _ = server
    x = tiny_victim.data.attacker.x[:2]
    status, doc = post(url, json.dumps({"inputs": x.tolist()}).encode(),
                       {"Content-Type": "application/json", "X-Client-Id": "j"})
    assert status == 200 and len(doc["outputs"]) == 2 and doc["queries_used"] == 2
    buf = io.BytesIO()
    np.save(buf, x)
    status, doc = post(url, buf.getvalue(), {"Content-Type": "application/x-npy",
                                             "X-Client-Id": "j"})
    assert status == 200 and doc["queries_used"] == 4


def test_too_large_is_413(server, tiny_victim):
    url, _ = server
    x = np.repeat(tiny_victim.data.attacker.x[:1], 100, axis=0)  # 25,600 bytes > 20,000
    status, doc = post(url, *octet(x))
    assert status == 413 and "exceeds the limit of 20,000" in doc["error"]
    status, doc = post(url, *octet(x[:33]))  # under the byte limit, over max_batch=32
    assert status == 413 and "limit of 32 per request" in doc["error"]
    big = json.dumps({"inputs": x[:20].tolist()}).encode()
    status, doc = post(url, big, {"Content-Type": "application/json", "X-Client-Id": "c1"})
    assert status == 413 and "application/octet-stream" in doc["error"]


def test_unknown_routes_and_methods(server):
    url, _ = server
    status, doc = post(url, b"", {}, path="/predict")
    assert status == 404 and "GET /health and POST /query" in doc["error"]
    status, doc = post(url, b"", {}, path="/query", method="GET")
    assert status == 405


def test_rate_limit_is_429(tiny_victim):
    app = make_app(target(tiny_victim), ServeLimits(rate=0.5, burst=2))
    with serving(app) as url:
        x = tiny_victim.data.attacker.x[:1]
        codes = [post(url, *octet(x, client="fast"))[0] for _ in range(3)]
        assert codes == [200, 200, 429]
        assert post(url, *octet(x, client="other"))[0] == 200  # per client
        with pytest.raises(QueryError, match="rate limit"):
            HttpOracle(url, "fast").query(x)


def test_server_failure_is_500_without_details(tiny_victim):
    with serving(make_app(target(tiny_victim, defense=Explodes))) as url:
        status, doc = post(url, *octet(tiny_victim.data.attacker.x[:1]))
    assert status == 500 and "secret" not in doc["error"] and "nothing was charged" in doc["error"]


def test_label_output(tiny_victim):
    with serving(make_app(target(tiny_victim, output="label"))) as url:
        res = HttpOracle(url, "l").query(tiny_victim.data.attacker.x[:3])
    assert res.outputs.dtype == np.int64 and res.outputs.shape == (3,)


def test_client_side_checks_refuse_whole_batches_uncharged(server, tiny_victim):
    url, _ = server
    oracle = HttpOracle(url, "z")
    x = tiny_victim.data.attacker.x[:4].copy()
    x[3] = 2.0
    for bad, needle in [(x, "input range"), (x[:, :, :4], "does not match"),
                        (x[:0], "empty"), (x.astype(np.int32), "dtype"), ([1, 2], "numpy")]:
        with pytest.raises(InvalidQueryError, match=needle):
            oracle.query(bad)
    assert oracle.queries_used == 0


def test_knockoff_steals_through_http(server, tiny_victim):
    url, app = server
    registry = default_registry()
    attack = registry.get("attack", "knockoff").cls(epochs=1)
    oracle = HttpOracle(url, "thief")
    ctx = AttackContext(seed=0, device="cpu", budget=oracle.budget, output=oracle.output,
                        input_shape=oracle.input_shape, num_classes=oracle.num_classes,
                        input_range=oracle.input_range, num_exits=3, victim_family="small_cnn",
                        toolbox=Toolbox(registry))
    stolen = attack.steal(oracle, tiny_victim.data.attacker.x, ctx)
    assert oracle.queries_used == BUDGET == app.state.service.clients.oracle("thief").queries_used
    assert stolen.model.harness_recipe.num_exits == 3
