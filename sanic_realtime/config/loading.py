"""Loading: ``${VAR}`` expansion, YAML, strict decoding with the key's path in every
error, then the cross-key checks (:mod:`.checks`)."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import msgspec

from ..exceptions import ConfigError
from .checks import check_config
from .schema import ChannelConfig, FilterSpec, RealtimeConfig, _dec_hook, _enc_hook

_ENV_RE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")
_AT_PATH_RE = re.compile(r"^(?P<msg>.*) - at `\$(?P<path>.*)`$", re.DOTALL)


def expand_env(text: str, environ: Mapping[str, str] | None = None) -> str:
    """Expand ``${VAR}`` and ``${VAR:-default}`` (default also when VAR is empty, as in sh)."""
    env = os.environ if environ is None else environ

    def repl(m: re.Match[str]) -> str:
        name, default = m.group(1), m.group(2)
        value = env.get(name)
        if value:
            return value
        if default is not None:
            return default
        if value is not None:  # set but empty, no default: empty is what was asked for
            return value
        line = text.count("\n", 0, m.start()) + 1
        raise ConfigError(
            f"environment variable {name} is not set (line {line}); "
            f"set it or write ${{{name}:-default}}"
        )

    return _ENV_RE.sub(repl, text)


def load_yaml(
    path: str | os.PathLike[str], environ: Mapping[str, str] | None = None
) -> RealtimeConfig:
    """Read ``path``, expand ``${VAR}``, decode its ``realtime:`` key strictly, and check it."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as e:
        raise ConfigError(f"cannot read configuration file {os.fspath(path)!r}: {e}") from None
    text = expand_env(text, environ)
    try:
        document = msgspec.yaml.decode(text)
    except msgspec.DecodeError as e:
        raise ConfigError(f"{os.fspath(path)} is not valid YAML: {e}") from None
    if not isinstance(document, dict) or "realtime" not in document:
        raise ConfigError(f"{os.fspath(path)} has no top-level 'realtime:' key", "realtime")
    return parse_config(document["realtime"] or {})


def _error_from(e: msgspec.ValidationError, prefix: str) -> ConfigError:
    m = _AT_PATH_RE.match(str(e))
    if m is None:
        return ConfigError(str(e), prefix)
    return ConfigError(m.group("msg"), prefix + m.group("path"))


def _convert(obj: Any, tp: type[Any], path: str) -> Any:
    try:
        return msgspec.convert(obj, tp, dec_hook=_dec_hook)
    except msgspec.ValidationError as e:
        raise _error_from(e, path) from None


def _mapping(obj: Any, path: str) -> dict[str, Any]:
    if obj is None:
        return {}
    if not isinstance(obj, dict):
        raise ConfigError(f"expected a mapping, got {type(obj).__name__}", path)
    for key in obj:
        if not isinstance(key, str):
            raise ConfigError(f"keys must be strings, got {key!r}", path)
    return dict(obj)


def parse_config(data: Any, path: str = "realtime") -> RealtimeConfig:
    """Decode builtins (a YAML or JSON document's ``realtime`` value) into a checked config."""
    data = _mapping(data, path)
    channels: dict[str, ChannelConfig] = {}
    for name, raw_channel in _mapping(data.pop("channels", None), f"{path}.channels").items():
        cpath = f"{path}.channels.{name}"
        raw_channel = _mapping(raw_channel, cpath)
        filters = {
            fname: _convert(
                _mapping(raw_filter, f"{cpath}.filters.{fname}"),
                FilterSpec,
                f"{cpath}.filters.{fname}",
            )
            for fname, raw_filter in _mapping(
                raw_channel.pop("filters", None), f"{cpath}.filters"
            ).items()
        }
        channel = _convert(raw_channel, ChannelConfig, cpath)
        channels[name] = msgspec.structs.replace(channel, filters=filters)
    config: RealtimeConfig = _convert(data, RealtimeConfig, path)
    config = msgspec.structs.replace(config, channels=channels)
    check_config(config, path)
    return config


def revalidate(config: RealtimeConfig) -> RealtimeConfig:
    """Check a config built in Python exactly as a YAML file would be checked."""
    if not isinstance(config, RealtimeConfig):
        raise ConfigError(f"expected a RealtimeConfig, got {type(config).__name__}")
    try:
        builtins = msgspec.to_builtins(config, enc_hook=_enc_hook)
    except TypeError as e:
        raise ConfigError(str(e), "realtime") from None
    return parse_config(builtins)
