"""Properties of result sealing: any edit of a sealed result is caught and named."""

from __future__ import annotations

import copy
import json

from hypothesis import given, settings
from hypothesis import strategies as st

from harness.io.integrity import SEAL, seal, seal_problems

JSON_LEAF = st.one_of(st.none(), st.booleans(), st.integers(-10**9, 10**9),
                      st.floats(allow_nan=False, allow_infinity=False), st.text(max_size=8))
JSON = st.recursive(JSON_LEAF, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=6), inner, max_size=4)),
    max_leaves=12)
METRICS = st.dictionaries(st.text("abcdefgh_", min_size=1, max_size=8),
                          st.floats(0, 1, allow_nan=False), min_size=1, max_size=5)


@st.composite
def results(draw: st.DrawFn) -> dict:
    """A result-like document: top-level fields, a metrics object, free-form diagnostics."""
    body = draw(st.dictionaries(st.text("abcdefghijklmnop_", min_size=1, max_size=8), JSON,
                                max_size=5))
    body.pop(SEAL, None)
    return {**body, "metrics": draw(METRICS), "diagnostics": draw(JSON)}


@settings(max_examples=200, deadline=None)
@given(results())
def test_a_sealed_result_is_intact_and_sealing_is_idempotent(result):
    sealed = seal(result)
    assert seal_problems(sealed) == []
    assert seal(sealed) == sealed
    assert seal_problems(json.loads(json.dumps(sealed))) == []  # a JSON round trip keeps it


@settings(max_examples=200, deadline=None)
@given(results(), st.data())
def test_an_edited_metric_is_named(result, data):
    sealed = seal(result)
    name = data.draw(st.sampled_from(sorted(result["metrics"])))
    edited = copy.deepcopy(sealed)
    edited["metrics"][name] = result["metrics"][name] + 0.25
    assert seal_problems(edited) == [f"field metrics.{name} was edited"]


@settings(max_examples=200, deadline=None)
@given(results(), st.data())
def test_any_other_edit_is_caught(result, data):
    sealed = seal(result)
    edited = copy.deepcopy(sealed)
    how = data.draw(st.sampled_from(["add", "remove", "change"]))
    fields = sorted(k for k in sealed if k not in (SEAL, "metrics"))
    if how == "add":
        edited["planted"] = data.draw(JSON)
    elif how == "remove":
        del edited[data.draw(st.sampled_from(fields))]
    else:
        field = data.draw(st.sampled_from(fields))
        new = data.draw(JSON)
        if json.dumps(new, sort_keys=True) == json.dumps(edited[field], sort_keys=True):
            return
        edited[field] = new
    problems = seal_problems(edited)
    assert problems and all("field" in p or "does not match" in p for p in problems)


@given(results())
def test_a_result_without_its_digest_is_refused(result):
    problems = seal_problems(result)
    assert len(problems) == 1 and f"no {SEAL}" in problems[0]
