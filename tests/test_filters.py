"""filters.py and subscriptions.py: compiling and matching, pure."""

from __future__ import annotations

from typing import Any

import pytest

from sanic_realtime.config import FilterSpec, parse_config
from sanic_realtime.events import EventId
from sanic_realtime.exceptions import (
    BadFilterValue,
    BadMessage,
    BadSince,
    UnknownChannel,
    UnknownFilter,
)
from sanic_realtime.filters import compile_filter
from sanic_realtime.subscriptions import plan_subscription

from .conftest import BASE

LEVELS = ["debug", "info", "warn", "error", "critical"]
SPECS = {
    "level": FilterSpec(op="min", order=LEVELS),
    "component": FilterSpec(),
    "provider_id": FilterSpec(),
    "only_errors": FilterSpec(op="flag", field="success", equals=False),
    "host": FilterSpec(field="log.metadata.host"),
    "urgent": FilterSpec(op="flag"),
}


def matches(params: dict[str, Any], data: Any, type: str = "log_update") -> bool:
    f = compile_filter("logs", SPECS, params)
    return True if f is None else f.matches(type, data)


def test_no_params_means_no_filter() -> None:
    """Nothing to filter compiles to None: every event matches, at no cost."""
    assert compile_filter("logs", SPECS, {}) is None
    assert compile_filter("logs", SPECS, {"only_errors": "false"}) is None


def test_min_over_order() -> None:
    """min lets through the value and everything after it in order."""
    assert matches({"level": "warn"}, {"level": "error"})
    assert matches({"level": "warn"}, {"level": "warn"})
    assert not matches({"level": "warn"}, {"level": "info"})
    assert matches({"level": "debug"}, {"level": "debug"})


def test_min_is_exact_and_needs_the_field() -> None:
    """Values outside order, other cases, other types and missing fields never match."""
    assert not matches({"level": "debug"}, {"level": "ERROR"})
    assert not matches({"level": "debug"}, {"level": 3})
    assert not matches({"level": "debug"}, {"message": "no level"})
    assert not matches({"level": "debug"}, None)


def test_eq_any_of_exact() -> None:
    """eq: a,b means any of, exact and case-sensitive."""
    assert matches({"component": "db,cache"}, {"component": "cache"})
    assert not matches({"component": "db,cache"}, {"component": "Cache"})
    assert not matches({"component": "db"}, {})
    assert matches({"component": ["db", "api"]}, {"component": "api"})


def test_eq_numbers_and_booleans_compare_as_json_text() -> None:
    """A query's "3" matches an event's 3; "true" matches true."""
    assert matches({"provider_id": "3"}, {"provider_id": 3})
    assert matches({"provider_id": 3}, {"provider_id": "3"})
    assert not matches({"provider_id": "3"}, {"provider_id": 4})
    assert matches({"component": "true"}, {"component": True})


def test_flag() -> None:
    """flag on: the field must equal `equals`; off: no filtering."""
    for on in ("true", "1", "yes", "YES", True, 1):
        assert matches({"only_errors": on}, {"success": False})
        assert not matches({"only_errors": on}, {"success": True})
        assert not matches({"only_errors": on}, {})
    for off in ("false", "0", "no", False, 0):
        assert matches({"only_errors": off}, {"success": True})
    assert matches({"urgent": "1"}, {"urgent": True})
    assert not matches({"urgent": "1"}, {"urgent": 1})  # equals true means the boolean


def test_flag_compares_booleans_as_booleans() -> None:
    """0 is not false, and a numeric `equals` is not matched by a boolean."""
    assert not matches({"only_errors": "true"}, {"success": 0})
    numeric = {"code": FilterSpec(op="flag", equals=1)}
    f = compile_filter("c", numeric, {"code": "true"})
    assert f is not None
    assert f.matches("t", {"code": 1})
    assert not f.matches("t", {"code": True})


def test_types_builtin() -> None:
    """types=a,b filters on the event type, on every channel."""
    assert matches({"types": "a,b"}, {}, type="b")
    assert not matches({"types": "a,b"}, {}, type="c")


def test_filters_combine_with_and() -> None:
    """Every filter of a subscription must match."""
    params = {"level": "error", "component": "db", "types": "log_update"}
    assert matches(params, {"level": "critical", "component": "db"})
    assert not matches(params, {"level": "critical", "component": "api"})
    assert not matches(params, {"level": "info", "component": "db"})
    assert not matches(params, {"level": "critical", "component": "db"}, type="other")


def test_dotted_field_reads_nested_data() -> None:
    """field: log.metadata.host reads nested objects, and attributes of objects."""
    assert matches({"host": "s1"}, {"log": {"metadata": {"host": "s1"}}})
    assert not matches({"host": "s1"}, {"log": {"metadata": "s1"}})

    class Log:
        metadata = {"host": "s1"}

    assert matches({"host": "s1"}, {"log": Log()})


def test_same_params_same_key() -> None:
    """Equal filters share a key (so fan-out evaluates them once); different ones don't."""
    a = compile_filter("logs", SPECS, {"component": "a,b", "level": "warn"})
    b = compile_filter("logs", SPECS, {"level": "warn", "component": "b,a"})
    c = compile_filter("logs", SPECS, {"level": "error", "component": "a,b"})
    assert a is not None and b is not None and c is not None
    assert a.key == b.key
    assert a.key != c.key
    assert hash(a.key) == hash(b.key)


@pytest.mark.parametrize(
    ("params", "error", "param", "words"),
    [
        ({"colour": "red"}, UnknownFilter, "colour", "unknown filter 'colour' for channel 'logs'"),
        ({"level": "fatal"}, BadFilterValue, "level", "must be one of debug, info"),
        ({"level": "warn,error"}, BadFilterValue, "level", "must be one of"),
        ({"only_errors": "maybe"}, BadFilterValue, "only_errors", "true/false/1/0/yes/no"),
        ({"component": ""}, BadFilterValue, "component", "at least one value"),
        ({"component": " , "}, BadFilterValue, "component", "at least one value"),
        ({"component": [{"a": 1}]}, BadFilterValue, "component", "takes strings"),
        ({"types": ""}, BadFilterValue, "types", "at least one value"),
    ],
)
def test_bad_params_name_the_parameter(
    params: dict[str, Any], error: type[Exception], param: str, words: str
) -> None:
    """Unknown filters and bad values are refused, naming the parameter."""
    with pytest.raises(error) as info:
        compile_filter("logs", SPECS, params)
    assert info.value.param == param  # type: ignore[attr-defined]
    assert words in str(info.value)


# --------------------------------------------------------------------------- planning

CONFIG = parse_config(BASE)


def test_plan_all_and_duplicates() -> None:
    """'all' expands to every channel; duplicates are dropped, order kept."""
    plan = plan_subscription(CONFIG, ["stats", "all", "stats"], {}, {})
    assert [r.channel for r in plan] == ["stats", "logs", "alerts", "requests"]


def test_plan_splits_filters_by_declaring_channel() -> None:
    """A filter goes to the listed channels that declare it; types to all."""
    plan = plan_subscription(CONFIG, ["stats", "alerts"], {"severity": "high", "types": "x"}, {})
    by = {r.channel: r.filter for r in plan}
    assert by["stats"] is not None and by["stats"].key == (("types", frozenset({"x"})),)
    assert by["alerts"] is not None and ("severity", "min", 2) in by["alerts"].key


def test_plan_refusals() -> None:
    """Unknown channels, filters nobody declares, bad since: each named."""
    with pytest.raises(UnknownChannel, match="'nope'"):
        plan_subscription(CONFIG, ["logs", "nope"], {}, {})
    with pytest.raises(UnknownFilter, match="'severity' for channels logs, stats"):
        plan_subscription(CONFIG, ["logs", "stats"], {"severity": "high"}, {})
    with pytest.raises(BadSince, match="not subscribed"):
        plan_subscription(CONFIG, ["logs"], {}, {"stats": "a:1"})
    with pytest.raises(BadSince, match=r"since\.logs: not an event id"):
        plan_subscription(CONFIG, ["logs"], {}, {"logs": "yesterday"})
    with pytest.raises(BadMessage):
        plan_subscription(CONFIG, [], {}, {})


def test_plan_since() -> None:
    """since ids are parsed per channel."""
    plan = plan_subscription(CONFIG, ["logs", "stats"], {}, {"stats": "ab:7"})
    assert plan[0].since is None
    assert plan[1].since == EventId("ab", 7)
