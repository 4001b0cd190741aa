"""Settings read from the environment: the layer modes."""

from __future__ import annotations

import pytest

from adapter import Settings, SettingsError
from adapter.service import memory_budget
from sandbox import Mode


@pytest.mark.parametrize(("raw", "mode"), [("auto", Mode.AUTO), ("ON", Mode.ON), ("Off", Mode.OFF)])
def test_a_layer_mode_is_read_lower_cased(raw: str, mode: Mode) -> None:
    settings = Settings.from_environ({"SANDBOX_TMPFS": raw})
    assert settings.tmpfs is mode
    assert settings.sandbox_config().tmpfs is mode


@pytest.mark.parametrize(("environ", "overrides", "message"), [
    ({"SANDBOX_SECCOMP": "maybe"}, {}, "SANDBOX_SECCOMP must be auto, on or off"),
    ({"SANDBOX_PER_RUN_UID": ""}, {}, "SANDBOX_PER_RUN_UID must be auto, on or off"),
    ({}, {"cgroups": "ON"}, "SANDBOX_CGROUPS must be auto, on or off"),
    ({}, {"mntns": True}, "SANDBOX_MNTNS must be auto, on or off"),
])
def test_a_bad_layer_mode_names_the_variable(environ: dict[str, str], overrides: dict[str, object],
                                             message: str) -> None:
    with pytest.raises(SettingsError) as raised:
        Settings.from_environ(environ, **overrides)
    assert str(raised.value) == message


def test_every_layer_mode_reaches_the_sandbox() -> None:
    environ = {f"SANDBOX_{name.upper()}": "off" for name in
               ("per_run_uid", "seccomp", "landlock", "tmpfs", "netns", "mntns", "cgroups")}
    config = Settings.from_environ(environ).sandbox_config()
    assert {config.per_run_uid, config.seccomp, config.landlock, config.tmpfs, config.netns,
            config.mntns, config.cgroups} == {Mode.OFF}


TOO_SHORT = ("SANDBOX_JUDGE0_REPLICA_TIMEOUT_S must be more than twice "
             "SANDBOX_JUDGE0_HOUSEKEEPING_INTERVAL_S")


@pytest.mark.parametrize(("environ", "message"), [
    ({"SANDBOX_JUDGE0_HOUSEKEEPING_INTERVAL_S": "0"},
     "SANDBOX_JUDGE0_HOUSEKEEPING_INTERVAL_S must be positive"),
    ({"SANDBOX_JUDGE0_REPLICA_TIMEOUT_S": "10"}, TOO_SHORT),
    ({"SANDBOX_JUDGE0_HOUSEKEEPING_INTERVAL_S": "1", "SANDBOX_JUDGE0_REPLICA_TIMEOUT_S": "2"},
     TOO_SHORT),
])
def test_a_replica_must_be_seen_well_within_its_timeout(environ: dict[str, str],
                                                        message: str) -> None:
    with pytest.raises(SettingsError) as raised:
        Settings.from_environ(environ)
    assert str(raised.value) == message


@pytest.mark.parametrize(("environ", "message"), [
    ({"SANDBOX_WARM_SESSIONS": "always"},
     "SANDBOX_WARM_SESSIONS must be one of startup, lazy, off"),
    ({"SANDBOX_WARM_SESSIONS_BYTES": "-1"}, "SANDBOX_WARM_SESSIONS_BYTES must not be negative"),
])
def test_bad_warm_session_settings_name_the_variable(environ: dict[str, str],
                                                     message: str) -> None:
    with pytest.raises(SettingsError) as raised:
        Settings.from_environ(environ)
    assert str(raised.value) == message


def test_the_replica_liveness_defaults() -> None:
    settings = Settings.from_environ({})
    assert (settings.judge0_housekeeping_interval_s, settings.judge0_replica_timeout_s) == (
        5.0, 30.0)


def test_the_session_kernels_warm_interpreter_is_taken_from_the_memory_budget() -> None:
    held = 100 << 20
    on = memory_budget(Settings.from_environ({"SANDBOX_WARM_SESSIONS_BYTES": str(held)}))
    off = memory_budget(Settings.from_environ({"SANDBOX_WARM_SESSIONS": "off"}))
    # No warm interpreter at all: none for sessions either.
    none = memory_budget(Settings.from_environ({"SANDBOX_WARM_PYTHON": "false"}))
    assert "SANDBOX_WARM_SESSIONS_BYTES (104857600)" in on[1]
    assert "SANDBOX_WARM_SESSIONS_BYTES" not in off[1] + none[1]
    # (The memory available may move a little between the readings.)
    assert abs(off[0] - on[0] - held) < 32 << 20 and abs(none[0] - off[0]) < 32 << 20
    # Given outright, the budget is what it says.
    assert memory_budget(Settings.from_environ({"SANDBOX_MEMORY_BUDGET_BYTES": "5"}))[0] == 5
