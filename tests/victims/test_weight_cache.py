"""Weight cache: keys, atomic round trip, detection of corrupt entries."""

from __future__ import annotations

import json

import pytest
import torch

from harness.errors import CacheError
from victims import cache


def _state() -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return {"a.weight": torch.randn(4, 3, generator=g), "a.bias": torch.arange(4.0),
            "bn.num_batches_tracked": torch.tensor(7)}


KEY = cache.config_key({"victim": "x", "width": 4}, "test-v1")


def test_config_key_is_canonical_and_sensitive():
    assert cache.config_key({"b": 1, "a": [1, 2]}, "v") == cache.config_key({"a": [1, 2], "b": 1}, "v")
    assert cache.config_key({"a": 1}, "v") != cache.config_key({"a": 2}, "v")
    assert cache.config_key({"a": 1}, "v") != cache.config_key({"a": 1}, "w")
    with pytest.raises(CacheError):
        cache.config_key({"a": object()}, "v")


def test_round_trip(tmp_path):
    state = _state()
    path = cache.save_weights(tmp_path, KEY, state, {"note": "hi"})
    assert path.exists()
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # no temp files left
    loaded, meta = cache.read_entry(tmp_path, KEY)
    assert meta == {"note": "hi"}
    assert loaded.keys() == state.keys()
    assert all(torch.equal(loaded[k], state[k]) for k in state)
    assert cache.state_dict_hash(loaded) == cache.state_dict_hash(state)


def test_missing_entry_is_none(tmp_path):
    assert cache.load_weights(tmp_path, KEY) is None


@pytest.mark.parametrize("damage", ["truncate", "flip", "empty", "header", "garbage"])
def test_corrupt_entries_are_detected(tmp_path, damage):
    path = cache.save_weights(tmp_path, KEY, _state())
    blob = path.read_bytes()
    if damage == "truncate":
        blob = blob[: len(blob) - 100]
    elif damage == "flip":
        blob = blob[:-50] + bytes([blob[-50] ^ 0xFF]) + blob[-49:]
    elif damage == "empty":
        blob = b""
    elif damage == "header":
        blob = blob.replace(b'"format": 1', b'"format": 9')
    else:
        blob = b"not a cache entry at all"
    path.write_bytes(blob)
    with pytest.raises(CacheError):
        cache.load_weights(tmp_path, KEY)


def test_entry_under_another_key_is_rejected(tmp_path):
    other = cache.config_key({"victim": "y"}, "test-v1")
    path = cache.save_weights(tmp_path, KEY, _state())
    path.rename(cache.entry_path(tmp_path, other))
    with pytest.raises(CacheError, match="key"):
        cache.load_weights(tmp_path, other)


def test_header_is_readable_json(tmp_path):
    path = cache.save_weights(tmp_path, KEY, _state(), {"epochs": 3})
    head = path.read_bytes()[len(cache.MAGIC):].split(b"\n", 1)[0]
    header = json.loads(head)
    assert header["key"] == KEY and header["meta"] == {"epochs": 3}


def test_discard_and_bad_keys(tmp_path):
    cache.save_weights(tmp_path, KEY, _state())
    cache.discard(tmp_path, KEY)
    cache.discard(tmp_path, KEY)  # idempotent
    assert cache.load_weights(tmp_path, KEY) is None
    with pytest.raises(CacheError):
        cache.entry_path(tmp_path, "../escape")


def test_state_dict_hash_sees_every_value():
    state = _state()
    changed = dict(state, **{"a.bias": state["a.bias"] + 1e-6})
    assert cache.state_dict_hash(state) != cache.state_dict_hash(changed)
