from __future__ import annotations

import numpy as np
import pytest

from harness.errors import CacheError, ConfigError
from tests.conftest import make_victim
from victims.serving import OnnxBackend, TorchBackend
from victims.serving.onnx_export import export_dir, stage_file


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return tmp_path_factory.mktemp("onnx_cache")


@pytest.fixture(scope="module")
def served(victim, cache):
    return OnnxBackend(warmup=0).load(victim, "cpu", cache)


def test_onnx_serving_matches_torch(victim, served, tmp_path):
    x = victim.data.test.x
    torch_served = TorchBackend(warmup=0).load(victim, "cpu", tmp_path)
    want = torch_served.serve(x, strategy=victim.strategy)
    got = served.serve(x, strategy=victim.strategy)
    np.testing.assert_array_equal(got.exits, want.exits)
    np.testing.assert_allclose(got.probs, want.probs, atol=1e-4)
    for g, w in zip(served.exit_probs(x), torch_served.exit_probs(x), strict=True):
        np.testing.assert_allclose(g, w, atol=1e-4)
    assert served.providers == ("CPUExecutionProvider",)
    assert served.cost_fraction == victim.model.cost_fraction


class _Counting:
    """Wraps an InferenceSession and counts its runs."""

    def __init__(self, sess):
        self.sess, self.calls = sess, 0

    def run(self, *args, **kwargs):
        self.calls += 1
        return self.sess.run(*args, **kwargs)


def test_true_early_exit_never_runs_later_stages(victim, served):
    x = victim.data.test.x
    first = int(np.flatnonzero(victim.strategy.exits(served.exit_probs(x)) == 0)[0])
    original = served.sessions
    served.sessions = [_Counting(s) for s in original]
    try:
        assert served.serve(x[first:first + 1], strategy=victim.strategy).exits.tolist() == [0]
        assert [s.calls for s in served.sessions] == [1, 0, 0]
        assert served.serve(x[:2], exits=np.array([1, 1])).exits.tolist() == [1, 1]
        assert [s.calls for s in served.sessions] == [3, 2, 0]
    finally:
        served.sessions = original


def test_io_binding_path_matches(victim, cache, served):
    bound = OnnxBackend(warmup=0, io_binding=True).load(victim, "cpu", cache)
    x = victim.data.test.x[:20]
    a = bound.serve(x, strategy=victim.strategy)
    b = served.serve(x, strategy=victim.strategy)
    np.testing.assert_array_equal(a.exits, b.exits)
    np.testing.assert_allclose(a.probs, b.probs, atol=1e-6)


def test_cache_is_reused(victim, cache, served):
    path = stage_file(export_dir(cache, victim.name, victim.weights_hash), 0)
    before = path.stat().st_mtime_ns
    OnnxBackend(warmup=0).load(victim, "cpu", cache)
    assert path.stat().st_mtime_ns == before


def test_corrupt_cache_file_is_detected_and_reexported(tmp_path):
    victim = make_victim("corrupt", seed=3)
    OnnxBackend().load(victim, "cpu", tmp_path)
    path = stage_file(export_dir(tmp_path, victim.name, victim.weights_hash), 1)
    path.write_bytes(b"not an onnx model")
    with pytest.warns(RuntimeWarning, match=r"re-exporting.*stage1\.onnx.*corrupt"):
        served = OnnxBackend().load(victim, "cpu", tmp_path)
    assert path.read_bytes() != b"not an onnx model"
    assert served.serve(victim.data.test.x[:3], strategy=victim.strategy).exits.shape == (3,)


def test_stale_cache_of_other_weights_is_reexported(tmp_path):
    a, b = make_victim("same", seed=1), make_victim("same", seed=2)
    OnnxBackend().load(a, "cpu", tmp_path)
    src = export_dir(tmp_path, a.name, a.weights_hash)
    dst = export_dir(tmp_path, b.name, b.weights_hash)
    dst.mkdir(parents=True)
    for f in src.iterdir():
        text = f.read_bytes().replace(a.weights_hash.encode(), b.weights_hash.encode())
        (dst / f.name).write_bytes(text)
    with pytest.warns(RuntimeWarning, match="do not match victim 'same'"):
        OnnxBackend().load(b, "cpu", tmp_path)


def test_user_model_dir_errors_are_clear(victim, cache, tmp_path):
    with pytest.raises(CacheError, match=r"lacks \['stage0.onnx'"):
        OnnxBackend(model_dir=str(tmp_path)).load(victim, "cpu", tmp_path)
    src = export_dir(cache, victim.name, victim.weights_hash)
    for k in range(3):
        stage_file(tmp_path, k).write_bytes(stage_file(src, k).read_bytes())
    assert OnnxBackend(model_dir=str(tmp_path)).load(victim, "cpu", cache).num_exits == 3
    with pytest.raises(ConfigError, match="do not match victim 'other'"):
        OnnxBackend(model_dir=str(tmp_path)).load(make_victim("other", 5), "cpu", cache)
    stage_file(tmp_path, 2).write_bytes(b"garbage")
    with pytest.raises(CacheError, match=r"cannot load ONNX stage file .*stage2\.onnx"):
        OnnxBackend(model_dir=str(tmp_path)).load(victim, "cpu", cache)


@pytest.mark.parametrize(("params", "match"), [
    ({"intra_op_num_threads": 0}, "intra_op_num_threads"), ({"atol": 0}, "atol"),
    ({"aggregate": "p99"}, "aggregate"), ({"verify_samples": 0}, "verify_samples"),
])
def test_bad_backend_params_are_clear_errors(victim, tmp_path, params, match):
    with pytest.raises(ConfigError, match=match):
        OnnxBackend(**params).load(victim, "cpu", tmp_path)
