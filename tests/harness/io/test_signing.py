"""Ed25519 signatures and run manifests (harness/io/signing.py), without running cells."""

from __future__ import annotations

import json
import stat

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from harness.io.signing import (
    KEYS_FILE,
    PRIVATE_KEY_FILE,
    FolderTrust,
    SigningKey,
    open_run_manifest,
    read_public_keys,
    result_folder,
)

JSON = st.recursive(st.none() | st.booleans() | st.integers(-10**6, 10**6) | st.text(max_size=8),
                    lambda inner: st.lists(inner, max_size=3)
                    | st.dictionaries(st.text(max_size=5), inner, max_size=3), max_leaves=12)
RESULT = st.dictionaries(st.text(min_size=1, max_size=6).filter(lambda k: k != "signature"),
                         JSON, min_size=1, max_size=5)


@pytest.fixture(scope="module")
def key(tmp_path_factory):
    return SigningKey.of_folder(tmp_path_factory.mktemp("key"))


@settings(max_examples=60, deadline=None)
@given(obj=RESULT, data=st.data())
def test_a_signature_verifies_and_any_change_breaks_it(key, obj, data):
    signed = key.sign(obj)
    assert key.public.verifies(signed)
    assert key.public.verifies(json.loads(json.dumps(signed)))  # a JSON round trip keeps it
    assert key.sign(signed) == signed  # re-signing replaces, never nests
    name = data.draw(st.sampled_from(sorted(obj)))
    edited = {**signed, name: [signed[name]]}
    assert not key.public.verifies(edited)
    assert not key.public.verifies({**signed, "added": 1})
    assert not key.public.verifies({k: v for k, v in signed.items() if k != "signature"})


def test_another_key_never_verifies(tmp_path, key):
    other = SigningKey.of_folder(tmp_path)
    assert other.public.id != key.public.id
    assert not other.public.verifies(key.sign({"a": 1}))


def test_the_folder_key_is_private_made_once_and_listed(tmp_path):
    first = SigningKey.of_folder(tmp_path)
    assert stat.S_IMODE((tmp_path / PRIVATE_KEY_FILE).stat().st_mode) == 0o600
    assert SigningKey.of_folder(tmp_path).public == first.public
    assert read_public_keys(tmp_path) == [first.public]
    (tmp_path / KEYS_FILE).unlink()  # a lost public file is written again
    SigningKey.of_folder(tmp_path)
    assert read_public_keys(tmp_path) == [first.public]


def test_a_broken_key_file_is_refused_with_the_fix(tmp_path):
    (tmp_path / PRIVATE_KEY_FILE).write_text("not a key")
    with pytest.raises(Exception, match="move it away"):
        SigningKey.of_folder(tmp_path)


def _cell(folder, name="seed0-a.json"):
    return folder / "cells" / "v" / "d" / "a" / name


def test_trust_needs_a_key_it_holds_and_a_manifest_entry(tmp_path):
    manifest = open_run_manifest(tmp_path)
    path = _cell(tmp_path)
    signed = manifest.write_signed(path, {"metric": 0.5})
    trust = FolderTrust.of(tmp_path)
    assert trust.problem(signed, path) is None
    assert "not signed" in trust.problem({"metric": 0.5}, path)
    stranger = SigningKey.of_folder(tmp_path / "elsewhere")
    assert "does not trust" in trust.problem(stranger.sign({"metric": 0.5}), path)
    # the folder's own key, a file no manifest lists (copied under another name)
    assert "no signed manifest" in trust.problem(signed, _cell(tmp_path, "seed9-b.json"))
    # the folder's own key, content the manifest does not list (another run's copy)
    assert "another content" in trust.problem(manifest.key.sign({"metric": 0.9}), path)
    tampered = {**signed, "signature": {**signed["signature"], "value": "0" * 128}}
    assert "does not match" in trust.problem(tampered, path)


def test_a_run_trusts_its_own_key_even_when_the_public_list_is_extended(tmp_path):
    manifest = open_run_manifest(tmp_path)
    forger = SigningKey.of_folder(tmp_path / "forger")
    keys = json.loads((tmp_path / KEYS_FILE).read_text())
    keys["keys"].append(forger.public.to_json())  # someone adds their key to the list
    (tmp_path / KEYS_FILE).write_text(json.dumps(keys))
    forged = forger.sign({"metric": 1.0})
    assert "does not trust" in FolderTrust.of(tmp_path).problem(forged, _cell(tmp_path))
    assert manifest.key.public.id in FolderTrust.of(tmp_path).keys


def test_an_edited_manifest_vouches_for_nothing(tmp_path):
    manifest = open_run_manifest(tmp_path)
    path = _cell(tmp_path)
    signed = manifest.write_signed(path, {"metric": 0.5})
    forged = manifest.key.sign({"metric": 0.99})  # had the forger the key, no manifest...
    doc = json.loads(manifest.path.read_text())
    doc["files"]["cells/v/d/a/seed0-a.json"] = "f" * 64  # ...and a manifest edited to list it
    manifest.path.write_text(json.dumps(doc))
    trust = FolderTrust.of(tmp_path)
    assert trust.bad_manifests == [manifest.path.name]
    assert "no signed manifest" in trust.problem(signed, path)
    assert trust.problem(forged, path) is not None


def test_later_runs_add_manifests_and_a_rewritten_file_stays_trusted(tmp_path):
    path = _cell(tmp_path)
    open_run_manifest(tmp_path).write_signed(path, {"metric": 0.5})
    trust = FolderTrust.of(tmp_path)  # loaded before the second run wrote
    again = open_run_manifest(tmp_path).write_signed(path, {"metric": 0.6})
    assert trust.problem(again, path) is None  # re-read on a miss
    assert len(list((tmp_path / "manifests").glob("*.json"))) == 2


def test_result_folder_names_the_folder_or_says_why_not(tmp_path):
    assert result_folder(_cell(tmp_path)) == tmp_path.resolve()
    assert result_folder(tmp_path / "replicas" / "v-1.json") == tmp_path.resolve()
    with pytest.raises(ValueError, match="neither under"):
        result_folder(tmp_path / "loose.json")
