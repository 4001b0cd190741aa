"""Hypothesis strategies shared by the tests."""

from __future__ import annotations

from typing import Any

from hypothesis import strategies as st

from adapter import Settings
from sandbox import Limits

MiB = 1 << 20
# The service's default ceilings: no limit drawn here is above what a request could get.
CEILINGS = Settings().ceilings()

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

# Bytes a program writes: every byte value (NUL, invalid UTF-8, lone continuation bytes), and
# sometimes a pattern repeated past the launcher's 64 KiB reads and the pipe's buffer, up to the
# 1 MiB output ceiling.
payloads = st.binary(max_size=4096) | st.builds(
    lambda pattern, times: pattern * times,
    st.binary(min_size=1, max_size=64), st.integers(min_value=1, max_value=1 << 14))

# Components of file names that are fine on their own: `.` and empty ones (which vanish), ones
# that mean something to a shell or elsewhere (`~`, `\\`, `$HOME`, newline), any text without a
# slash or NUL, and components of exactly 255 bytes in 1-, 2- and 4-byte characters.
plain_name_parts = (
    st.sampled_from([".", "", "...", "~", "\\", " ", "\n", "-rf", "$HOME", "a", "main.py"])
    | st.text(st.characters(exclude_characters="/\0", exclude_categories=["Cs"]), max_size=12)
    | st.sampled_from(["a" * 255, "é" * 127 + "a", "\U0001f600" * 63 + "abc"])
)
# Components that make a whole name unusable: `..`, NUL, lone surrogates (a pair of them too),
# and 256 bytes.
bad_name_parts = st.sampled_from([
    "..", "\0", "a\0b", "a" * 256, "é" * 128, "\U0001f600" * 64,
    "\udc80", "\ud83d\ude00", "main\udfff.py",
])
# Mostly harmless leads and trails, or names that are refused whatever their parts are would
# crowd out the ones that are written.
_leads = st.just("") | st.just("./") | st.sampled_from(["/", "//", "../", "../../"])
_trails = st.just("") | st.just("/") | st.sampled_from(["/.", "/.."])
# Whole names: plain components joined by slashes, or with one bad component among them,
# possibly absolute, with `./` or `../` in front or a trailing slash; or any text at all.
file_names = (
    st.builds(lambda lead, parts, trail: lead + "/".join(parts) + trail,
              _leads, st.lists(plain_name_parts, max_size=6), _trails)
    | st.builds(lambda lead, before, bad, after, trail: lead + "/".join([*before, bad, *after])
                + trail, _leads, st.lists(plain_name_parts, max_size=3), bad_name_parts,
                st.lists(plain_name_parts, max_size=3), _trails)
    | st.text(max_size=40)
)
# Names from a handful of components, so that a list of them collides: the same file twice, a
# file where a folder is needed, a folder where a file is.
colliding_file_names = st.lists(st.sampled_from(["a", "b", ".", ".."]), min_size=1,
                                max_size=3).map("/".join)


def limits_with(**chosen: st.SearchStrategy[float]) -> st.SearchStrategy[Limits]:
    """Limits under the ceilings, each field roomy for the short programs of the tests (at least
    10 s of wall time, 1 s of CPU, 64 MiB of address space, 4 KiB of output for a traceback)
    except the `chosen` ones, drawn from the strategies given."""
    roomy: dict[str, st.SearchStrategy[float]] = {
        "wall_timeout_s": st.floats(10, CEILINGS.wall_timeout_s),
        "cpu_time_s": st.floats(1, CEILINGS.cpu_time_s),
        "memory_bytes": st.integers(64 * MiB, int(CEILINGS.memory_bytes)),
        "max_file_bytes": st.integers(1, int(CEILINGS.max_file_bytes)),
        "max_output_bytes": st.integers(4096, int(CEILINGS.max_output_bytes)),
    }
    return st.builds(Limits, **{**roomy, **chosen})
