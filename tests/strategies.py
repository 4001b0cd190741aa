"""Hypothesis strategies shared by the tests."""

from __future__ import annotations

from typing import Any

from hypothesis import strategies as st

json_scalars = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text()
any_json: st.SearchStrategy[Any] = st.recursive(
    json_scalars,
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=12,
)
# Bodies shaped like execute requests, with every field possibly of the wrong type.
code = st.sampled_from(["print(1)", "import sys; print(sys.stdin.read())", "raise SystemExit(2)",
                        "1/0", ""]) | st.text(max_size=30)
properties = st.fixed_dictionaries(
    {},
    optional={
        "code": code | any_json,
        "stdin": st.text(max_size=20) | any_json,
        "args": st.lists(st.text(max_size=10), max_size=3) | any_json,
        "timeoutInSeconds": st.sampled_from([0.5, 1, 2]) | any_json,
        "codeInputType": st.sampled_from(["inline", "Inline"]) | any_json,
        "executionType": st.sampled_from(["synchronous", "Synchronous"]) | any_json,
        "identifier": st.text(max_size=10) | any_json,
    },
)
execute_bodies = st.fixed_dictionaries({"properties": properties}) | any_json
