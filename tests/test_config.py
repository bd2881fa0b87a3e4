"""config.py: strict YAML decoding, durations, ${ENV}, cross-key checks. No event loop."""

from __future__ import annotations

from pathlib import Path

import pytest

from sanic_realtime import ConfigError, Realtime, RealtimeConfig
from sanic_realtime.config import (
    ChannelConfig,
    FilterSpec,
    expand_env,
    load_yaml,
    parse_config,
    parse_duration,
)

DESIGN_YAML = """
realtime:
  url_prefix: /ws
  max_clients: 1000
  buffer_size: 256
  slow_client: disconnect
  max_message_size: 4096
  heartbeat_interval: 30s
  client_timeout: 90s
  client_rate_limit: {messages: 50, per: 1s}
  allowed_origins: ["*"]
  backplane: memory
  history: {size: 1000, ttl: 10m}
  auth:
    mode: none
    jwt_secret: ${REALTIME_JWT_SECRET:-}
    algorithms: [HS256]
    user_claim: sub
    role_claim: role
  admin:
    broadcast_path: /admin/ws/broadcast
    stats_path: /admin/ws/stats
    role: admin
  channels:
    logs:
      filters:
        level: {op: min, order: [debug, info, warn, error, critical]}
        component: {}
        provider_id: {}
    stats: {initial: last, history: {size: 100, ttl: 1m}}
    alerts:
      filters:
        severity: {op: min, order: [low, medium, high, critical]}
      roles: [admin]
    requests:
      filters:
        provider_id: {}
        model_id: {}
        only_errors: {op: flag, field: success, equals: false}
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "realtime.yaml"
    path.write_text(text)
    return path


def error_of(tmp_path: Path, text: str, env: dict[str, str] | None = None) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        load_yaml(write(tmp_path, text), env or {})
    return info.value


def test_design_example_loads(tmp_path: Path) -> None:
    """The whole example of DESIGN.md decodes, with durations in seconds."""
    config = load_yaml(write(tmp_path, DESIGN_YAML), {})
    assert config.heartbeat_interval == 30.0
    assert config.history.ttl == 600.0
    assert config.client_rate_limit.per == 1.0
    assert config.channels["logs"].filters["level"].order == [
        "debug",
        "info",
        "warn",
        "error",
        "critical",
    ]
    assert config.channels["requests"].filters["only_errors"].equals is False
    assert config.history_for("stats").size == 100
    assert config.history_for("logs").size == 1000
    assert config.auth.jwt_secret is None  # ${VAR:-} left YAML a null


def test_channels_only_file_gets_defaults(tmp_path: Path) -> None:
    """A file with nothing but channels works; everything else has defaults."""
    config = load_yaml(write(tmp_path, "realtime:\n  channels:\n    logs:\n    stats: {}\n"), {})
    assert list(config.channels) == ["logs", "stats"]
    assert config.url_prefix == "/ws"
    assert config.buffer_size == 256
    assert config.slow_client == "disconnect"
    assert config.client_timeout == 90.0


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("250ms", 0.25), ("30s", 30.0), ("5m", 300.0), ("1h", 3600.0), (2, 2.0), ("1.5s", 1.5)],
)
def test_durations(text: object, seconds: float) -> None:
    """Durations take ms/s/m/h units or plain seconds."""
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("bad", ["30", "5 minutes", "-1s", "s", True, None, "1d"])
def test_bad_durations(bad: object) -> None:
    """Anything else is refused with the value named."""
    with pytest.raises(ValueError, match="invalid duration"):
        parse_duration(bad)


def test_bad_duration_names_key(tmp_path: Path) -> None:
    """A bad duration in the file names its key path."""
    e = error_of(tmp_path, "realtime:\n  heartbeat_interval: 30 seconds\n")
    assert e.path == "realtime.heartbeat_interval"
    assert "invalid duration" in e.message


def test_unknown_key_names_path(tmp_path: Path) -> None:
    """Unknown keys are errors naming where they are."""
    e = error_of(tmp_path, "realtime:\n  buffer_sise: 3\n")
    assert e.path == "realtime"
    assert "buffer_sise" in e.message
    e = error_of(
        tmp_path,
        "realtime:\n  channels:\n    logs:\n      filters:\n"
        "        level: {op: min, order: [a], colour: red}\n",
    )
    assert e.path == "realtime.channels.logs.filters.level"
    assert "colour" in e.message


def test_wrong_type_names_nested_path(tmp_path: Path) -> None:
    """msgspec's $.path comes through, with channel and filter names filled in."""
    e = error_of(
        tmp_path, "realtime:\n  channels:\n    logs:\n      filters:\n        level: {op: mix}\n"
    )
    assert e.path == "realtime.channels.logs.filters.level.op"
    assert str(e).startswith("realtime.channels.logs.filters.level.op: ")
    e = error_of(tmp_path, "realtime:\n  buffer_size: lots\n")
    assert e.path == "realtime.buffer_size"
    assert "Expected `int`" in e.message
    e = error_of(tmp_path, "realtime:\n  channels:\n    stats: {history: {size: -1}}\n")
    assert e.path == "realtime.channels.stats.history.size"
    e = error_of(tmp_path, "realtime:\n  allowed_origins: [1]\n")
    assert e.path == "realtime.allowed_origins[0]"


def test_not_a_mapping(tmp_path: Path) -> None:
    """A channel or filters that is not a mapping is named."""
    e = error_of(tmp_path, "realtime:\n  channels: [logs]\n")
    assert e.path == "realtime.channels"
    e = error_of(tmp_path, "realtime:\n  channels:\n    logs: 3\n")
    assert e.path == "realtime.channels.logs"


def test_missing_realtime_key_and_bad_yaml(tmp_path: Path) -> None:
    """A file without realtime:, invalid YAML and a missing file are clear errors."""
    assert "no top-level 'realtime:'" in str(error_of(tmp_path, "other: 1\n"))
    assert "not valid YAML" in str(error_of(tmp_path, "realtime: [\n"))
    with pytest.raises(ConfigError, match="cannot read"):
        load_yaml(tmp_path / "missing.yaml")


def test_other_top_level_keys_are_left_alone(tmp_path: Path) -> None:
    """The file may hold the app's own settings beside realtime:."""
    config = load_yaml(write(tmp_path, "app: {debug: true}\nrealtime:\n  buffer_size: 8\n"), {})
    assert config.buffer_size == 8


def test_env_expansion(tmp_path: Path) -> None:
    """${VAR} and ${VAR:-default} expand before parsing, so numbers stay numbers."""
    text = (
        "realtime:\n  buffer_size: ${BUF}\n  admin: {token: '${ADMIN_TOKEN:-}'}\n"
        "  url_prefix: ${PREFIX:-/live}\n"
    )
    config = load_yaml(write(tmp_path, text), {"BUF": "64"})
    assert config.buffer_size == 64
    assert config.admin.token == ""
    assert config.url_prefix == "/live"
    bare = load_yaml(write(tmp_path, "realtime:\n  admin: {token: ${T:-}}\n"), {})
    assert bare.admin.token is None
    config = load_yaml(write(tmp_path, text), {"BUF": "8", "ADMIN_TOKEN": "s3", "PREFIX": "/rt"})
    assert (config.buffer_size, config.admin.token, config.url_prefix) == (8, "s3", "/rt")


def test_unset_env_without_default_names_variable(tmp_path: Path) -> None:
    """An unset variable with no default is an error naming it and its line."""
    e = error_of(tmp_path, "realtime:\n  admin:\n    token: ${NOPE_TOKEN}\n")
    assert "NOPE_TOKEN" in str(e)
    assert "line 3" in str(e)


def test_expand_env_default_when_empty() -> None:
    """As in sh, ':-' also replaces an empty value."""
    assert expand_env("${A:-x}", {"A": ""}) == "x"
    assert expand_env("${A}", {"A": ""}) == ""
    assert expand_env("$A ${B:-}", {}) == "$A "


@pytest.mark.parametrize(
    ("yaml", "path", "words"),
    [
        (
            "channels: {logs: {filters: {level: {op: min}}}}",
            "realtime.channels.logs.filters.level.order",
            "needs an 'order'",
        ),
        (
            "channels: {logs: {filters: {level: {op: eq, order: [a]}}}}",
            "realtime.channels.logs.filters.level.order",
            "only applies to op: min",
        ),
        (
            "channels: {logs: {filters: {level: {op: min, order: [a, a]}}}}",
            "realtime.channels.logs.filters.level.order",
            "unique",
        ),
        (
            "channels: {logs: {filters: {c: {equals: true}}}}",
            "realtime.channels.logs.filters.c.equals",
            "only applies to op: flag",
        ),
        (
            "channels: {logs: {filters: {'a.b': {}}}}",
            "realtime.channels.logs.filters.a.b",
            "invalid filter name",
        ),
        (
            "channels: {logs: {filters: {types: {}}}}",
            "realtime.channels.logs.filters.types",
            "reserved",
        ),
        (
            "channels: {logs: {filters: {x: {field: 'a..b'}}}}",
            "realtime.channels.logs.filters.x.field",
            "invalid field path",
        ),
        ("channels: {'': {}}", "realtime.channels", "must not be empty"),
        ("channels: {'a/b': {}}", "realtime.channels", "invalid channel name"),
        ("channels: {all: {}}", "realtime.channels.all", "reserved"),
        ("channels: {health: {}}", "realtime.channels.health", "reserved"),
        (
            "admin: {broadcast_path: /ws/logs}\n  channels: {logs: {}}",
            "realtime.channels.logs",
            "clashes with admin.broadcast_path",
        ),
        ("admin: {stats_path: /ws}", "realtime.admin.stats_path", "clashes"),
        ("admin: {stats_path: /admin/ws/broadcast}", "realtime.admin.broadcast_path", "differ"),
        ("url_prefix: ws", "realtime.url_prefix", "starting with '/'"),
        ("url_prefix: /ws/", "realtime.url_prefix", "not ending"),
        ("url_prefix: /", "realtime.url_prefix", "must not be '/'"),
        (
            "heartbeat_interval: 1m\n  client_timeout: 30s",
            "realtime.client_timeout",
            "longer than heartbeat_interval",
        ),
        ("heartbeat_interval: 0s", "realtime.heartbeat_interval", "greater than 0"),
        ("client_rate_limit: {messages: 0}", "realtime.client_rate_limit.messages", ">= 1"),
        ("history: {ttl: 0s}", "realtime.history.ttl", "greater than 0"),
        ("allowed_origins: []", "realtime.allowed_origins", "must not be empty"),
        ("allowed_origins: [example.com]", "realtime.allowed_origins[0]", "not an origin"),
        ("backplane: kafka://x", "realtime.backplane", "redis:// URL"),
        ("slow_client: block", "realtime.slow_client", "Invalid enum value"),
        ("max_clients: 0", "realtime.max_clients", ">= 1"),
    ],
)
def test_cross_key_checks(tmp_path: Path, yaml: str, path: str, words: str) -> None:
    """Each check names the key to fix and says why."""
    e = error_of(tmp_path, f"realtime:\n  {yaml}\n")
    assert e.path == path, str(e)
    assert words in e.message, str(e)


def test_python_config_is_checked_like_yaml() -> None:
    """A config built in Python goes through the same checks, with durations in seconds."""
    good = RealtimeConfig(
        heartbeat_interval=5,  # type: ignore[arg-type]
        client_timeout=15,  # type: ignore[arg-type]
        channels={"logs": ChannelConfig(filters={"level": FilterSpec(op="min", order=["a", "b"])})},
    )
    realtime = Realtime(good)
    assert realtime.config.client_timeout == 15.0
    bad = RealtimeConfig(channels={"logs": ChannelConfig(filters={"level": FilterSpec(op="min")})})
    with pytest.raises(ConfigError) as info:
        Realtime(bad)
    assert info.value.path == "realtime.channels.logs.filters.level.order"
    with pytest.raises(ConfigError) as info:
        Realtime(RealtimeConfig(buffer_size="big"))  # type: ignore[arg-type]
    assert info.value.path == "realtime.buffer_size"


def test_redis_backplane_settings(tmp_path: Path) -> None:
    """A Redis URL picks the Redis backplane; its key prefix is checked when read."""
    realtime = Realtime(
        parse_config({"backplane": "redis://127.0.0.1:6379/0", "redis": {"prefix": "app1"}})
    )
    assert realtime.hub.backplane.kind == "redis"
    assert realtime.config.redis.prefix == "app1"
    e = error_of(tmp_path, "realtime:\n  backplane: redis://x\n  redis: {prefix: 'a b'}\n")
    assert e.path == "realtime.redis.prefix" and "no spaces" in e.message
    e = error_of(tmp_path, "realtime:\n  redis: {prefx: a}\n")
    assert e.path == "realtime.redis" and "prefx" in e.message


def test_from_yaml(tmp_path: Path) -> None:
    """Realtime.from_yaml reads the realtime: key of the file."""
    realtime = Realtime.from_yaml(write(tmp_path, DESIGN_YAML))
    assert set(realtime.config.channels) == {"logs", "stats", "alerts", "requests"}


# --------------------------------------------------------------------------- as users start apps

_BAD_FILE = """realtime:
  channels:
    logs:
      filters:
        level: {op: max}
"""
_APP = """from sanic import Sanic
from sanic_realtime import Realtime

app = Sanic("cfgapp")
app.blueprint(Realtime.from_yaml("realtime.yaml").blueprint)

if __name__ == "__main__":
    app.run(port=1, single_process=True)
"""


@pytest.mark.parametrize(
    "command",
    [["-m", "sanic", "app:app"], ["-m", "sanic", "app:app", "--workers", "2"], ["app.py"]],
    ids=["sanic-cli", "sanic-cli-workers", "python-app-run"],
)
def test_a_bad_file_names_the_key_however_the_app_is_started(
    tmp_path: Path, command: list[str]
) -> None:
    """Sanic's error printer shows ``error.message``: it must carry the key path."""
    import subprocess
    import sys

    (tmp_path / "realtime.yaml").write_text(_BAD_FILE)
    (tmp_path / "app.py").write_text(_APP)
    run = subprocess.run(
        [sys.executable, *command],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        env={"PATH": "/usr/bin:/bin", "NO_COLOR": "1", "PYTHONPATH": str(Path.cwd())},
    )
    assert run.returncode != 0
    output = run.stdout + run.stderr
    assert "realtime.channels.logs.filters.level.op: Invalid enum value 'max'" in output, output


def test_config_error_parts() -> None:
    e = ConfigError("must be > 0", "realtime.max_clients")
    assert (e.path, e.reason) == ("realtime.max_clients", "must be > 0")
    assert e.message == str(e) == "realtime.max_clients: must be > 0"
    assert ConfigError("no path").message == "no path"
