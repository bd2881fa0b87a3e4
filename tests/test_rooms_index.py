"""rooms.py's index of eq filters (issue 20, item 4), pure: no event loop.

A room files each group whose filter has an ``eq`` term under that term's values; an
event looks its field's text up instead of testing every group. These tests check that
``Room.matching`` gives exactly the groups that evaluating every group's filter gives
(each once), that the buckets follow adds, removes and replacements, and that values
compare as ``Filter.matches`` compares them (``42`` and ``"42"`` alike, ``42.0`` not).
"""

from __future__ import annotations

import random
from types import SimpleNamespace
from typing import Any

import pytest

from sanic_realtime.config import FilterSpec, ThrottleConfig
from sanic_realtime.exceptions import BadFilterValue
from sanic_realtime.filters import Filter, compile_filter, field_text
from sanic_realtime.rooms import Group, Room, Rooms

LEVELS = ["debug", "info", "warn", "error", "critical"]
SPECS = {
    "order_id": FilterSpec(),
    "component": FilterSpec(),
    "service": FilterSpec(field="component"),  # another name for the same field
    "host": FilterSpec(field="log.metadata.host"),
    "level": FilterSpec(op="min", order=LEVELS),
    "urgent": FilterSpec(op="flag"),
    "only_errors": FilterSpec(op="flag", field="success", equals=False),
    "code": FilterSpec(op="flag", equals=1),
}
THROTTLE = ThrottleConfig(min=1.0, max=60.0, key="component")


def f(**params: Any) -> Filter:
    compiled = compile_filter("c", SPECS, params, THROTTLE)
    assert compiled is not None
    return compiled


def brute(room: Room[str], event_type: str, data: Any) -> list[Group[str]]:
    """What fan-out did before the index: every group's filter, in turn."""
    return [
        g for g in room.groups.values() if g.filter is None or g.filter.matches(event_type, data)
    ]


def members(groups: list[Group[str]]) -> set[str]:
    return {s for g in groups for s in g.members}


def same(room: Room[str], event_type: str, data: Any) -> set[str]:
    """room.matching agrees with brute force (each group once); who gets the event."""
    got = room.matching(event_type, data)
    assert len({id(g) for g in got}) == len(got), "a group came twice"
    assert {id(g) for g in got} == {id(g) for g in brute(room, event_type, data)}
    return members(got)


def check_index(room: Room[str]) -> None:
    """The buckets hold each indexed group under exactly its term's values, nothing is
    empty, and every group is either plain or indexed."""
    filed: dict[int, set[tuple[tuple[str, ...], str]]] = {}
    for path, buckets in room._index.items():
        assert buckets, f"empty field {path}"
        for value, bucket in buckets.items():
            assert bucket, f"empty bucket {path}={value}"
            for key, group in bucket.items():
                assert room.groups[key] is group
                filed.setdefault(id(group), set()).add((path, value))
    for key, group in room.groups.items():
        assert group.members, "an empty group was kept"
        if group.term is None:
            assert room._plain[key] is group
            assert id(group) not in filed
        else:
            path, values = group.term
            assert key not in room._plain
            assert filed[id(group)] == {(path, v) for v in values}
    assert len(room._plain) + len(filed) == len(room.groups)


def test_index_terms_are_the_eq_terms_fewest_values_first() -> None:
    """eq terms are indexable, the one with the fewest values preferred (a tie: checks
    order, i.e. by parameter name); min, flag, types and interval are not."""
    assert f(order_id="o1").index_term() == (("order_id",), frozenset({"o1"}))
    assert f(component="db,api").index_term() == (("component",), frozenset({"db", "api"}))
    both = f(component="a,b,c", order_id="7", level="warn")
    assert both.index_terms() == (
        (("order_id",), frozenset({"7"})),
        (("component",), frozenset({"a", "b", "c"})),
    )
    assert both.has_rest(0) and both.has_rest(1)
    assert both.matches_rest("t", {"component": "b", "level": "error"})  # order_id not read
    assert not both.matches_rest("t", {"component": "d", "level": "error"})
    assert both.matches_rest("t", {"order_id": 7, "level": "error"}, 1)  # component not read
    assert not both.matches_rest("t", {"order_id": 8, "level": "error"}, 1)
    tie = f(order_id="x", component="y")
    assert [path for path, _ in tie.index_terms()] == [("component",), ("order_id",)]
    assert f(host="h1").index_term() == (("log", "metadata", "host"), frozenset({"h1"}))
    for params in ({"level": "warn"}, {"urgent": "1"}, {"types": "a,b"}, {"interval": "5s"}):
        assert f(**params).index_term() is None
        assert f(**params).index_terms() == ()
    assert not f(order_id="o1").has_rest()
    assert f(order_id="o1", types="t").has_rest()
    assert not f(order_id="o1", interval="5s").has_rest()  # interval is not a match condition


def test_equality_looks_up_instead_of_testing_every_filter(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """1,000 distinct order_id filters: an event reaches its one group and evaluates no
    filter at all (the eq term is the whole filter); with a types term, only that group's."""
    calls = {"matches": 0, "rest": 0}
    matches, rest = Filter.matches, Filter.matches_rest

    def counting_matches(self: Filter, event_type: str, data: Any) -> bool:
        calls["matches"] += 1
        return matches(self, event_type, data)

    def counting_rest(self: Filter, event_type: str, data: Any, term: int = 0) -> bool:
        calls["rest"] += 1
        return rest(self, event_type, data, term)

    monkeypatch.setattr(Filter, "matches", counting_matches)
    monkeypatch.setattr(Filter, "matches_rest", counting_rest)
    room: Room[str] = Room("orders")
    for i in range(1000):
        room.add(f"s{i}", f(order_id=f"o{i}"))
    room.add("typed", f(order_id="o7", types="paid"))
    check_index(room)
    assert room.index_sizes() == {("order_id",): 1000}
    assert members(room.matching("created", {"order_id": "o42"})) == {"s42"}
    assert calls == {"matches": 0, "rest": 0}
    assert members(room.matching("paid", {"order_id": "o7"})) == {"s7", "typed"}
    assert members(room.matching("created", {"order_id": "o7"})) == {"s7"}
    assert calls == {"matches": 0, "rest": 2}
    assert room.matching("created", {"order_id": "o1000"}) == []
    assert room.matching("created", {}) == []


def test_a_group_is_filed_under_its_least_crowded_term(monkeypatch: pytest.MonkeyPatch) -> None:
    """component=db&order_id=o<i> for 1,000 subscribers: component is preferred (a tie,
    and c < o) for the first, but then db's bucket is crowded, so the others are filed
    by order_id: an event evaluates the rest of at most 2 filters, not 1,000."""
    calls = 0
    rest = Filter.matches_rest

    def counting(self: Filter, event_type: str, data: Any, term: int = 0) -> bool:
        nonlocal calls
        calls += 1
        return rest(self, event_type, data, term)

    monkeypatch.setattr(Filter, "matches_rest", counting)
    room: Room[str] = Room("orders")
    for i in range(1000):
        room.add(f"s{i}", f(component="db", order_id=f"o{i}"))
    assert room.index_sizes() == {("component",): 1, ("order_id",): 999}
    check_index(room)
    assert same(room, "t", {"component": "db", "order_id": "o5"}) == {"s5"}
    assert same(room, "t", {"component": "db", "order_id": "o0"}) == {"s0"}
    assert same(room, "t", {"component": "api", "order_id": "o5"}) == set()
    calls = 0
    room.matching("t", {"component": "db", "order_id": "o5"})
    assert calls == 2  # s0 (filed under db) and s5


def test_any_of_is_filed_under_each_value() -> None:
    """component=db,api is found by db and by api, once each; not by anything else."""
    room: Room[str] = Room("c")
    room.add("both", f(component="db,api"))
    room.add("db", f(component="db"))
    assert room.index_sizes() == {("component",): 2}
    assert same(room, "t", {"component": "db"}) == {"both", "db"}
    assert same(room, "t", {"component": "api"}) == {"both"}
    assert same(room, "t", {"component": "cache"}) == set()
    assert same(room, "t", {"component": "DB"}) == set()  # exact, case-sensitive
    # "service" reads the same field: one index for both names.
    room.add("svc", f(service="api"))
    assert room.index_sizes() == {("component",): 2}
    assert same(room, "t", {"component": "api"}) == {"both", "svc"}
    check_index(room)


def test_mixed_indexed_and_plain_groups() -> None:
    """No filter, min, flag and types groups are evaluated for every event; eq groups
    are looked up, and the rest of their filter is still evaluated."""
    room: Room[str] = Room("c")
    room.add("all", None)
    room.add("warn+", f(level="warn"))
    room.add("urgent", f(urgent="yes"))
    room.add("alerts", f(types="alert"))
    room.add("db", f(component="db"))
    room.add("db-error", f(component="db", level="error"))
    room.add("db-alert", f(component="db", types="alert"))
    room.add("h1", f(host="h1", component="db,api"))  # indexed by host (one value)
    room.add("db-throttled", f(component="db", interval="5s"))
    assert len(room._plain) == 4 and len(room.groups) == 9
    assert room.index_sizes() == {("component",): 1, ("log", "metadata", "host"): 1}
    check_index(room)
    assert same(room, "log", {"component": "db", "level": "info"}) == {
        "all",
        "db",
        "db-throttled",
    }
    assert same(room, "log", {"component": "db", "level": "error"}) == {
        "all",
        "warn+",
        "db",
        "db-error",
        "db-throttled",
    }
    assert same(room, "alert", {"component": "db", "urgent": True}) == {
        "all",
        "urgent",
        "alerts",
        "db",
        "db-alert",
        "db-throttled",
    }
    host = {"component": "api", "log": {"metadata": {"host": "h1"}}}
    assert same(room, "log", host) == {"all", "h1"}
    assert same(room, "log", {**host, "component": "cache"}) == {"all"}  # the rest fails


def test_values_compare_as_matches_does() -> None:
    """The index reads the field as the eq check does (field_text): numbers and booleans
    by their JSON text, so 42 and "42" are one value and 42.0 is another; anything else
    (None, lists, objects) is no value."""
    room: Room[str] = Room("c")
    room.add("text42", f(order_id="42"))
    room.add("int42", f(order_id=42))  # the same filter: "42"
    room.add("float", f(order_id=42.5))
    room.add("true", f(order_id="true"))
    room.add("list", f(order_id=[1, "x"]))
    assert room.filter_of("text42").key == room.filter_of("int42").key
    assert len(room.groups) == 4
    cases: list[tuple[Any, set[str]]] = [
        (42, {"text42", "int42"}),
        ("42", {"text42", "int42"}),
        (42.0, set()),  # "42.0"
        (42.5, {"float"}),
        ("42.5", {"float"}),
        (True, {"true"}),
        ("true", {"true"}),
        (1, {"list"}),
        ("1", {"list"}),
        ("x", {"list"}),
        (False, set()),
        (None, set()),
        ([42], set()),
        ({"42": 42}, set()),
        (" 42", set()),  # the event's text is not stripped (the filter's is)
    ]
    for value, expected in cases:
        assert same(room, "t", {"order_id": value}) == expected, value
        for group in room.groups.values():
            assert group.filter is not None
            found = any(g is group for g in room.matching("t", {"order_id": value}))
            assert found == group.filter.matches("t", {"order_id": value}), (value, group)
    assert field_text({"order_id": 42}, ("order_id",)) == "42"
    assert field_text({"order_id": 42.0}, ("order_id",)) == "42.0"
    assert field_text({"order_id": None}, ("order_id",)) is None


def test_missing_field_and_odd_data() -> None:
    """An event without the field, or whose data is not a mapping, reaches no indexed
    group; attributes of objects are read as the eq check reads them."""
    room: Room[str] = Room("c")
    room.add("o1", f(order_id="o1"))
    room.add("h1", f(host="h1"))
    room.add("all", None)
    for data in ({}, {"other": "o1"}, None, "o1", 1, ["o1"], {"log": "h1"}, {"log": None}):
        assert same(room, "t", data) == {"all"}, data
    assert same(room, "t", SimpleNamespace(order_id="o1")) == {"all", "o1"}
    assert same(room, "t", {"log": SimpleNamespace(metadata={"host": "h1"})}) == {"all", "h1"}
    assert same(room, "t", {"log": {"metadata": {"host": "h1"}}}) == {"all", "h1"}


def test_remove_cleans_up_buckets() -> None:
    """A bucket goes with its last group, a field with its last bucket; a group shared by
    several subscribers stays until the last one leaves."""
    room: Room[str] = Room("c")
    room.add("a1", f(component="db,api"))
    room.add("a2", f(component="api,db"))  # the same key: the same group
    room.add("b", f(component="api"))
    room.add("p", None)
    assert len(room.groups) == 3
    assert room.index_sizes() == {("component",): 2}
    assert room.remove("a1")
    assert room.index_sizes() == {("component",): 2}
    assert same(room, "t", {"component": "db"}) == {"a2", "p"}
    assert room.remove("a2")
    assert room.index_sizes() == {("component",): 1}  # db's bucket is gone
    assert set(room._index[("component",)]) == {"api"}
    check_index(room)
    assert not room.remove("a2")
    assert room.remove("b")
    assert room._index == {} and room.index_sizes() == {}
    assert room.remove("p")
    assert room.groups == {} and room._plain == {} and len(room) == 0

    rooms: Rooms[str] = Rooms()
    rooms.add("s", "orders", f(order_id="o1"))
    assert rooms.remove("s", "orders")
    assert rooms.get("orders") is None


def test_replacing_a_filter_moves_the_subscriber() -> None:
    """add() again replaces the subscriber's filter: it leaves its old bucket (emptied
    and removed) and is found under the new value only, once."""
    room: Room[str] = Room("c")
    room.add("s", f(order_id="o1"))
    room.add("t", f(order_id="o1", types="x"))
    room.add("s", f(order_id="o2"))
    assert same(room, "x", {"order_id": "o1"}) == {"t"}
    assert same(room, "x", {"order_id": "o2"}) == {"s"}
    room.add("t", f(level="warn"))  # from indexed to plain
    assert room.index_sizes() == {("order_id",): 1}
    assert same(room, "x", {"order_id": "o1", "level": "error"}) == {"t"}
    room.add("t", f(order_id="o2,o3"))  # and back
    assert same(room, "x", {"order_id": "o2"}) == {"s", "t"}
    room.add("s", None)
    assert same(room, "x", {"order_id": "o2"}) == {"s", "t"}
    assert same(room, "x", {"order_id": "o9"}) == {"s"}
    check_index(room)
    assert len(room) == 2


# --------------------------------------------------------------------------- property

POOL: list[Any] = ["a", "b", "c", "42", 42, 42.0, 7, "7", True, False, "true", "", " a"]


def random_params(rng: random.Random) -> dict[str, Any]:
    params: dict[str, Any] = {}
    for name in ("order_id", "component", "service", "host"):
        if rng.random() < 0.35:
            k = rng.choice((1, 1, 1, 2, 3))
            values = [rng.choice(POOL) for _ in range(k)]
            if rng.random() < 0.5 and all(isinstance(v, str) for v in values):
                params[name] = ",".join(values)
            else:
                params[name] = values if k > 1 or rng.random() < 0.5 else values[0]
    if rng.random() < 0.3:
        params["level"] = rng.choice(LEVELS)
    for flag in ("urgent", "only_errors", "code"):
        if rng.random() < 0.15:
            params[flag] = rng.choice(("yes", "no", "1", True))
    if rng.random() < 0.2:
        params["types"] = ",".join(rng.sample(("log", "alert", "x"), rng.choice((1, 2))))
    if rng.random() < 0.1:
        params["interval"] = rng.choice(("2s", "5s"))
    return params


def random_value(rng: random.Random) -> Any:
    return rng.choice([*POOL, None, 1, 0, 42.5, [42], {"a": 1}, SimpleNamespace(a=1)])


def random_data(rng: random.Random) -> Any:
    roll = rng.random()
    if roll < 0.04:
        return rng.choice((None, "a", 42, ["a"]))
    data: dict[str, Any] = {}
    for name in ("order_id", "component", "level", "urgent", "success", "code"):
        if rng.random() < 0.7:
            data[name] = rng.choice(LEVELS) if name == "level" else random_value(rng)
    if rng.random() < 0.5:
        host = random_value(rng)
        data["log"] = rng.choice(
            (
                {"metadata": {"host": host}},
                {"metadata": host},
                SimpleNamespace(metadata={"host": host}),
            )
        )
    if roll > 0.97:
        return SimpleNamespace(**data)
    return data


@pytest.mark.parametrize("seed", range(8))
def test_index_agrees_with_brute_force(seed: int) -> None:
    """Random filters of every op (eq with any-of and mixed types, min, flag, types,
    interval), random adds, replacements and removes, random events: the indexed
    groups an event reaches are exactly those that every filter's evaluation gives,
    each once, and the subscribers reached are those whose own filter matches."""
    rng = random.Random(seed)
    filters: list[Filter | None] = [None]
    while len(filters) < 60:
        try:
            filters.append(compile_filter("c", SPECS, random_params(rng), THROTTLE))
        except BadFilterValue:
            continue
    assert sum(1 for x in filters if x is not None and x.index_term() is not None) > 20
    room: Room[str] = Room("c")
    own: dict[str, Filter | None] = {}
    subscribers = [f"s{i}" for i in range(150)]
    for step in range(600):
        s = rng.choice(subscribers)
        if rng.random() < 0.25:
            assert room.remove(s) == (s in own)
            own.pop(s, None)
        else:
            chosen = rng.choice(filters)
            room.add(s, chosen)
            own[s] = chosen
        if step % 50 == 0:
            check_index(room)
        for _ in range(3):
            event_type = rng.choice(("log", "alert", "x"))
            data = random_data(rng)
            reached = same(room, event_type, data)
            wanted = {sub for sub, x in own.items() if x is None or x.matches(event_type, data)}
            assert reached == wanted
    check_index(room)
    for s in list(own):
        room.remove(s)
    assert room.groups == {} and room._plain == {} and room._index == {}
