"""Settings read from the environment: the layer modes."""

from __future__ import annotations

import pytest

from adapter import Settings, SettingsError
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


def test_the_replica_liveness_defaults() -> None:
    settings = Settings.from_environ({})
    assert (settings.judge0_housekeeping_interval_s, settings.judge0_replica_timeout_s) == (
        5.0, 30.0)
