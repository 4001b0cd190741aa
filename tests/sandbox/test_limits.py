from __future__ import annotations

import dataclasses

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sandbox import LIMIT_FIELDS, Limits

positive = st.integers(min_value=1, max_value=2**40)
limits = st.builds(Limits, **{name: positive for name in LIMIT_FIELDS})


@given(limits, limits)
def test_clamped_limits_never_exceed_ceilings(requested: Limits, ceilings: Limits) -> None:
    clamped = requested.clamp(ceilings)
    for name in LIMIT_FIELDS:
        assert getattr(clamped, name) == min(getattr(requested, name), getattr(ceilings, name))


@pytest.mark.parametrize("value", [0, -1, True, "5", float("nan")])
def test_non_positive_limits_are_refused(value: object) -> None:
    with pytest.raises(ValueError, match="wall_timeout_s must be a positive number"):
        Limits(wall_timeout_s=value)  # type: ignore[arg-type]


def test_replace_ignores_none() -> None:
    assert Limits().replace(wall_timeout_s=None, cpu_time_s=2) == dataclasses.replace(
        Limits(), cpu_time_s=2)
