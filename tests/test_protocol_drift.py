"""The browser client names the wire as the server defines it.

``static/realtime.js`` has one frozen ``PROTOCOL`` object (message types, the close codes
and error codes it acts on) and ``static/client.d.ts`` literal unions and a ``PROTOCOL``
declaration; both are read here as text (no browser) and compared with
:mod:`sanic_realtime.protocol`, with the Python client where the two clients are meant
to agree, and with the AsyncAPI document the server serves. A failure says which side
lacks what.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any, get_args

import msgspec
import pytest

import sanic_realtime
import sanic_realtime.client as python_client
from sanic_realtime.client import ServerClosed
from sanic_realtime.client.event import RESUME_FAILED
from sanic_realtime.client.receive import (
    CLOSE_HEARTBEAT,
    FATAL_CLOSES,
    TRANSIENT_ERRORS,
    UNSOLICITED_ERRORS,
)
from sanic_realtime.protocol import (
    CLIENT_MESSAGE_TYPES,
    CONTROL_TYPES,
    HTTP_ERROR_CODES,
    IN_BAND_ERROR_CODES,
    SERVER_MESSAGES,
    CloseCode,
    EventEnvelope,
    LossReason,
    Ping,
    Presence,
    PresenceChangeData,
    PresenceData,
    PresenceReply,
    PresenceUser,
    Publish,
    Published,
    PublishedData,
    Refresh,
    Sender,
    Subscribe,
    Subscribed,
    Unsubscribe,
    Unsubscribed,
)

from .conftest import BASE, LiveServer
from .tokens import jwt_realtime

STATIC = Path(sanic_realtime.__file__).parent / "static"
JS_PATH = STATIC / "realtime.js"
DTS_PATH = STATIC / "client.d.ts"
CLIENT_DIR = Path(python_client.__file__).parent

#: Close codes that the AsyncAPI description and docs/protocol.md's table leave out:
#: 1002 is websockets' own answer to a frame that breaks RFC 6455, 4000 the clients' own.
UNDESCRIBED_CLOSES = {CloseCode.PROTOCOL_ERROR, CloseCode.HEARTBEAT}
#: The error codes the two clients give for the same failure (docs/clients.md), besides
#: ``closed_<code>`` for the closes neither retries.
SHARED_CLIENT_CODES = {
    "not_general_route",
    "gave_up",
    # presence() and publish() (docs/clients.md)
    "not_connected",
    "too_many_requests",
    "request_timeout",
    "connection_lost",
}

Scalar = str | int


# --------------------------------------------------------------------------- comparing


def plain(value: Any) -> Any:
    """A CloseCode as the number it is (and pairs of them), for readable messages."""
    if isinstance(value, tuple):
        return tuple(plain(v) for v in value)
    return int(value) if isinstance(value, CloseCode) else value


def same(what: str, side: str, got: Iterable[Scalar], other: str, want: Iterable[Scalar]) -> None:
    """``got`` (``side``'s) names exactly ``want`` (``other``'s); else say who lacks what."""
    got_set, want_set = {plain(v) for v in got}, {plain(v) for v in want}
    problems = []
    if want_set - got_set:
        problems.append(f"{side} lacks {sorted(want_set - got_set, key=str)} (in {other})")
    if got_set - want_set:
        problems.append(f"{other} lacks {sorted(got_set - want_set, key=str)} (in {side})")
    assert not problems, f"{what}: " + "; ".join(problems)


# --------------------------------------------------------------------------- reading JS


def strip_comments(source: str, *, strings: bool = True) -> str:
    """``source`` without its ``//`` and ``/* */`` comments (and, with ``strings=False``,
    with the contents of its string and template literals blanked). Line breaks stay, so
    line numbers do too. Enough for realtime.js (its one regex literal has no ``//``)."""
    out: list[str] = []
    i, n = 0, len(source)
    while i < n:
        c = source[i]
        if source.startswith("//", i):
            while i < n and source[i] != "\n":
                i += 1
        elif source.startswith("/*", i):
            end = source.index("*/", i + 2) + 2
            out.append("\n" * source.count("\n", i, end))
            i = end
        elif c in "\"'`":
            j = i + 1
            while j < n and source[j] != c:
                j += 2 if source[j] == "\\" else 1
            body = source[i + 1 : j]
            out.append(c + (body if strings else re.sub(r"[^\n]", " ", body)) + c)
            i = j + 1
        else:
            out.append(c)
            i += 1
    return "".join(out)


JS = JS_PATH.read_text()
JS_CODE = strip_comments(JS)
JS_BARE = strip_comments(JS, strings=False)
DTS = DTS_PATH.read_text()
DTS_CODE = strip_comments(DTS)


def block(source: str, start: str, path: Path) -> tuple[str, int]:
    """The text from ``start`` to its closing bracket, and where it begins."""
    at = source.find(start)
    assert at >= 0, f"{path.name} has no {start!r}"
    opening = at + len(start) - 1
    depth = 0
    for i in range(opening, len(source)):
        depth += {"{": 1, "(": 1, "[": 1, "}": -1, ")": -1, "]": -1}.get(source[i], 0)
        if depth == 0:
            return source[at : i + 1], at
    raise AssertionError(f"{path.name}: {start!r} is not closed")


def entries(text: str, path: Path, where: str) -> dict[str, Scalar]:
    """``NAME: "value"`` / ``NAME: 1000`` entries (``readonly`` allowed), in order."""
    found: dict[str, Scalar] = {}
    for name, string, number in re.findall(
        r'(?:readonly\s+)?([A-Za-z_]\w*)\s*:\s*(?:"([^"]*)"|(\d+))\s*[,;]?', text
    ):
        assert name not in found, f"{path.name}: {where}.{name} is given twice"
        found[name] = string if not number else int(number)
    return found


def js_protocol() -> dict[str, dict[str, Scalar]]:
    """realtime.js's ``export const PROTOCOL = Object.freeze({...})``, section by section."""
    text, _ = block(JS_CODE, "export const PROTOCOL = Object.freeze({", JS_PATH)
    sections = dict(re.findall(r"(\w+):\s*Object\.freeze\(\{(.*?)\}\)", text, re.S))
    assert sections, "realtime.js: PROTOCOL has no Object.freeze({...}) sections"
    return {name: entries(body, JS_PATH, f"PROTOCOL.{name}") for name, body in sections.items()}


def dts_protocol() -> dict[str, dict[str, Scalar]]:
    """client.d.ts's ``export declare const PROTOCOL: {...}``, section by section."""
    text, _ = block(DTS_CODE, "export declare const PROTOCOL: {", DTS_PATH)
    sections = dict(re.findall(r"readonly\s+(\w+):\s*\{(.*?)\}", text, re.S))
    assert sections, "client.d.ts: PROTOCOL declares no sections"
    return {name: entries(body, DTS_PATH, f"PROTOCOL.{name}") for name, body in sections.items()}


def dts_union(name: str) -> set[Scalar]:
    """The members of ``export type <name> = "a" | "b" | ...;``, other unions expanded."""
    match = re.search(rf"export type {name}\s*=\s*(.*?);", DTS_CODE, re.S)
    assert match, f"client.d.ts has no `export type {name}`"
    members: set[Scalar] = set()
    for item in (part.strip() for part in match.group(1).split("|")):
        if not item:
            continue  # a leading |
        if item.startswith('"') and item.endswith('"'):
            members.add(item[1:-1])
        elif item.isdigit():
            members.add(int(item))
        elif re.fullmatch(r"[A-Z]\w*", item):
            members |= dts_union(item)
        else:
            raise AssertionError(f"client.d.ts: {name} has a member that is no literal: {item}")
    return members


def dts_fields(interface: str) -> set[str]:
    """The fields of ``export interface <interface> ... {...}`` (generic or not)."""
    match = re.search(rf"export interface {interface}\b[^{{]*\{{", DTS_CODE)
    assert match, f"client.d.ts has no `export interface {interface}`"
    text, _ = block(DTS_CODE[match.start() :], match.group(0), DTS_PATH)
    return set(re.findall(r"^\s*(\w+)\??:", text, re.M))


def wire_fields(struct: type[msgspec.Struct]) -> list[str]:
    """A Struct's fields as they go on the wire (``from``, not ``from_``)."""
    return [f.encode_name for f in msgspec.structs.fields(struct)]


def tag(struct: type[msgspec.Struct]) -> str:
    return str(struct.__struct_config__.tag)


def line_of(source: str, index: int) -> int:
    return source.count("\n", 0, index) + 1


def js_first_arguments(call: str) -> list[tuple[str, int]]:
    """The first argument (as text) of each ``call(`` in realtime.js, with its line."""
    found = []
    for match in re.finditer(re.escape(call) + r"\(", JS_CODE):
        i, depth, quote = match.end(), 0, ""
        start = i
        while True:
            c = JS_CODE[i]
            if quote:
                quote = "" if c == quote else quote
            elif c in "\"'`":
                quote = c
            elif c in "([{":
                depth += 1
            elif c in ")]}":
                depth -= 1
            elif c == "," and depth == 0:
                break
            i += 1
        found.append((JS_CODE[start:i].strip(), line_of(JS_CODE, start)))
    return found


def js_fatal_closes(protocol: dict[str, dict[str, Scalar]]) -> set[Scalar]:
    match = re.search(r"const FATAL_CLOSE = new Set\(\[(.*?)\]\)", JS_CODE, re.S)
    assert match, "realtime.js has no `const FATAL_CLOSE = new Set([...])`"
    names = re.findall(r"CLOSE\.(\w+)", match.group(1))
    assert names, "realtime.js: FATAL_CLOSE names no PROTOCOL.closeCodes entry"
    return {protocol["closeCodes"][name] for name in names}


def js_client_codes(protocol: dict[str, dict[str, Scalar]]) -> set[str]:
    """The codes realtime.js gives its own RealtimeErrors (not the server's)."""
    codes: set[str] = set()
    for argument, line in js_first_arguments("new RealtimeError"):
        if "data.code" in argument:
            continue  # the server's code, from an error message
        if argument == "`closed_${code}`":
            codes |= {f"closed_{code}" for code in js_fatal_closes(protocol)}
            continue
        literals = re.findall(r'"([^"]*)"', argument)
        assert literals, f"realtime.js:{line}: a RealtimeError code this test cannot read"
        codes |= set(literals)
    return codes


def python_client_codes() -> set[str]:
    """The codes the Python client gives its own errors (first arguments in its source)."""
    makers = {"RealtimeClientError", "GaveUp", "RequestFailed", "NoReply"}
    codes = {ServerClosed(int(code), "").code for code in FATAL_CLOSES}
    for path in CLIENT_DIR.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Name)
                and node.func.id in makers
                and node.args
                and isinstance(node.args[0], ast.Constant)
                and isinstance(node.args[0].value, str)
            ):
                codes.add(node.args[0].value)
    return codes


# --------------------------------------------------------------------------- realtime.js


def test_js_protocol_has_its_four_sections() -> None:
    same(
        "PROTOCOL's sections",
        "realtime.js",
        js_protocol(),
        "this test",
        ["serverMessages", "clientMessages", "closeCodes", "errorCodes"],
    )
    assert re.search(r"^export const PROTOCOL = Object\.freeze\(", JS, re.M), "not exported"


def test_js_message_types_are_the_protocols() -> None:
    protocol = js_protocol()
    same(
        "server message types",
        "realtime.js PROTOCOL.serverMessages",
        protocol["serverMessages"].values(),
        "protocol CONTROL_TYPES",
        CONTROL_TYPES,
    )
    same(
        "client message types",
        "realtime.js PROTOCOL.clientMessages",
        protocol["clientMessages"].values(),
        "protocol CLIENT_MESSAGE_TYPES",
        CLIENT_MESSAGE_TYPES,
    )
    for section in ("serverMessages", "clientMessages"):
        for name, value in protocol[section].items():
            assert name == str(value).upper(), f"realtime.js PROTOCOL.{section}.{name}: {value!r}"
    # Every server message is a control message (a tag) but the event envelope: nothing
    # the server sends escapes CONTROL_TYPES.
    untagged = [m.__name__ for m in SERVER_MESSAGES if m.__struct_config__.tag is None]
    assert untagged == [EventEnvelope.__name__]


def test_js_close_and_error_codes_are_the_protocols() -> None:
    protocol = js_protocol()
    for name, value in protocol["closeCodes"].items():
        assert name in CloseCode.__members__, (
            f"realtime.js PROTOCOL.closeCodes.{name}: CloseCode has no {name} "
            f"(it has {', '.join(CloseCode.__members__)})"
        )
        assert value == CloseCode[name], (
            f"realtime.js PROTOCOL.closeCodes.{name} is {value}, CloseCode.{name} is "
            f"{CloseCode[name].value}"
        )
    for name, value in protocol["errorCodes"].items():
        assert value in IN_BAND_ERROR_CODES, (
            f"realtime.js PROTOCOL.errorCodes.{name} = {value!r}: protocol "
            "IN_BAND_ERROR_CODES lacks it (a browser only sees in-band errors)"
        )
        assert name == str(value).upper(), f"realtime.js PROTOCOL.errorCodes.{name}: {value!r}"


def test_js_acts_on_what_its_protocol_names_and_on_no_literal() -> None:
    """Each close and error code of PROTOCOL is used by name; no close code, message type
    or server error code is compared or sent as an inline literal."""
    protocol = js_protocol()
    text, start = block(JS_CODE, "export const PROTOCOL = Object.freeze({", JS_PATH)
    end = start + len(text)
    codes = "|".join(str(int(c)) for c in CloseCode)
    for match in re.finditer(rf"(?<![\w.])({codes})(?![\w.])", JS_BARE):
        if not start <= match.start() < end:
            raise AssertionError(
                f"realtime.js:{line_of(JS_BARE, match.start())}: close code {match.group(1)} "
                "as a literal: name it in PROTOCOL.closeCodes"
            )
    named = set(CONTROL_TYPES) | set(CLIENT_MESSAGE_TYPES) | set(IN_BAND_ERROR_CODES)
    compared = r'(?:case|===|!==|type:|kind:)\s*"(\w+)"|"(\w+)"\s*(?:===|!==)'
    for match in re.finditer(compared, JS_CODE):
        value = match.group(1) or match.group(2)
        if value in named and not start <= match.start() < end:
            raise AssertionError(
                f"realtime.js:{line_of(JS_CODE, match.start())}: {value!r} as a literal: "
                "use its PROTOCOL name"
            )
    for section, alias in (("closeCodes", "CLOSE"), ("errorCodes", "ERR")):
        for name in protocol[section]:
            used = re.search(rf"\b(?:{alias}|PROTOCOL\.{section})\.{name}\b", JS_CODE[end:])
            assert used, f"realtime.js PROTOCOL.{section}.{name} is never used: acted on how?"


# --------------------------------------------------------------------------- client.d.ts


#: client.d.ts union -> what it must name, and where that comes from.
UNIONS: dict[str, tuple[str, Iterable[Scalar]]] = {
    "ServerMessageType": ("protocol CONTROL_TYPES", CONTROL_TYPES),
    "ClientMessageType": ("protocol CLIENT_MESSAGE_TYPES", CLIENT_MESSAGE_TYPES),
    "CloseCode": ("protocol CloseCode", [int(c) for c in CloseCode]),
    "InBandErrorCode": ("protocol IN_BAND_ERROR_CODES", IN_BAND_ERROR_CODES),
    "HttpErrorCode": ("protocol HTTP_ERROR_CODES", HTTP_ERROR_CODES),
    "ErrorCode": (
        "protocol IN_BAND_ERROR_CODES | HTTP_ERROR_CODES",
        sorted(set(IN_BAND_ERROR_CODES) | set(HTTP_ERROR_CODES)),
    ),
    "LossReason": ("protocol LossReason", get_args(LossReason)),
}


@pytest.mark.parametrize("union", UNIONS)
def test_dts_unions_are_the_protocols(union: str) -> None:
    source, want = UNIONS[union]
    same(union, f"client.d.ts {union}", dts_union(union), source, want)


def test_dts_declares_the_js_protocol() -> None:
    js, dts = js_protocol(), dts_protocol()
    same("PROTOCOL's sections", "client.d.ts PROTOCOL", dts, "realtime.js PROTOCOL", js)
    for section in js:
        same(
            f"PROTOCOL.{section}",
            f"client.d.ts PROTOCOL.{section}",
            dts[section].items(),
            f"realtime.js PROTOCOL.{section}",
            js[section].items(),
        )


def test_dts_messages_are_shaped_as_the_protocols() -> None:
    """The envelope's fields are EventEnvelope's; every message type the d.ts names is a
    control type or the clients' own resume_failed."""
    fields = wire_fields(EventEnvelope)
    same(
        "the envelope's fields",
        "client.d.ts RealtimeMessage",
        dts_fields("RealtimeMessage"),
        "protocol EventEnvelope",
        fields,
    )
    known = set(CONTROL_TYPES) | {RESUME_FAILED}
    typed = set(re.findall(r'^\s*type: "(\w+)";', DTS_CODE, re.M))
    handled = set(re.findall(r'^\s*on\(type: "(\w+)"', DTS_CODE, re.M))
    assert RESUME_FAILED in typed and RESUME_FAILED in handled
    assert typed <= known, f"client.d.ts names message types the protocol lacks: {typed - known}"
    assert handled <= known, f"client.d.ts on() takes types the protocol lacks: {handled - known}"
    dispatched = set(re.findall(r'_dispatch\(\{\s*type:\s*"(\w+)"', JS_CODE))
    same(
        "the clients' own message types",
        "realtime.js",
        dispatched,
        "the Python client (RESUME_FAILED)",
        [RESUME_FAILED],
    )


#: client.d.ts interface -> the Struct whose data it types.
DATA_INTERFACES: dict[str, type[msgspec.Struct]] = {
    "Sender": Sender,
    "PresenceUser": PresenceUser,
    "PresenceData": PresenceData,
    "PresenceChange": PresenceChangeData,
    "PublishResult": PublishedData,
}


@pytest.mark.parametrize("interface", DATA_INTERFACES)
def test_dts_data_interfaces_are_the_protocols(interface: str) -> None:
    """What presence() and publish() resolve with, presence_join/leave's data and an
    event's ``from`` have the fields of the server's Structs."""
    struct = DATA_INTERFACES[interface]
    same(
        f"{interface}'s fields",
        f"client.d.ts {interface}",
        dts_fields(interface),
        f"protocol {struct.__name__}",
        wire_fields(struct),
    )


#: The reply the server sends to each client message (an ``error`` may answer any).
REPLIES: dict[type[msgspec.Struct], type[msgspec.Struct]] = {
    Subscribe: Subscribed,
    Unsubscribe: Unsubscribed,
    Presence: PresenceReply,
    Publish: Published,
}


def test_js_awaits_the_protocols_replies_by_ref() -> None:
    """realtime.js's REPLY table pairs each request it sends with the server's reply
    to it, and every request it sends goes through ``_request`` (which gives it a ref):
    only ping (answered by any message) is sent without one, and refresh not at all."""
    protocol = js_protocol()
    match = re.search(r"const REPLY = Object\.freeze\(\{(.*?)\}\);", JS_CODE, re.S)
    assert match, "realtime.js has no `const REPLY = Object.freeze({...});`"
    pairs = re.findall(r"\[SEND\.(\w+)\]:\s*MSG\.(\w+)", match.group(1))
    table = {
        protocol["clientMessages"][send]: protocol["serverMessages"][reply] for send, reply in pairs
    }
    want = {tag(request): tag(reply) for request, reply in REPLIES.items()}
    same("request -> reply", "realtime.js REPLY", table.items(), "the server", want.items())
    for reply in REPLIES.values():
        assert "ref" in wire_fields(reply), f"{reply.__name__} does not echo ref"
    sent = set(re.findall(r"type:\s*SEND\.(\w+)", JS_CODE))
    requested = {name for name, value in protocol["clientMessages"].items() if value in table}
    assert sent - requested == {"PING"}, f"sent without a reply to await: {sent - requested}"
    assert requested <= sent, f"never sent: {requested - sent}"
    assert tag(Refresh) not in {protocol["clientMessages"][n] for n in sent}
    assert tag(Ping) == protocol["clientMessages"]["PING"]
    request, _ = block(JS_CODE, "_request(message, request) {", JS_PATH)
    assert "ref" in request, "realtime.js's _request sends no ref"


# --------------------------------------------------------------------------- the two clients


def test_the_clients_act_on_the_same_closes_and_errors() -> None:
    protocol = js_protocol()
    same(
        "closes neither client retries",
        "realtime.js FATAL_CLOSE",
        js_fatal_closes(protocol),
        "the Python client's FATAL_CLOSES",
        FATAL_CLOSES,
    )
    timeout = re.search(r"const CLOSE_TIMEOUT = CLOSE\.(\w+);", JS_CODE)
    assert timeout, "realtime.js has no `const CLOSE_TIMEOUT = CLOSE.<name>;`"
    assert protocol["closeCodes"][timeout.group(1)] == CLOSE_HEARTBEAT, (
        f"realtime.js closes a dead connection with {protocol['closeCodes'][timeout.group(1)]}, "
        f"the Python client with {int(CLOSE_HEARTBEAT)}"
    )
    same(
        "error codes the clients act on",
        "realtime.js PROTOCOL.errorCodes",
        protocol["errorCodes"].values(),
        "the Python client's UNSOLICITED_ERRORS | TRANSIENT_ERRORS",
        UNSOLICITED_ERRORS | TRANSIENT_ERRORS,
    )


def test_the_clients_own_error_codes() -> None:
    """client.d.ts's ClientErrorCode is what realtime.js gives its errors; the codes the
    two clients share mean the same in both."""
    js_codes = js_client_codes(js_protocol())
    same(
        "the browser client's own error codes",
        "client.d.ts ClientErrorCode",
        dts_union("ClientErrorCode"),
        "realtime.js (new RealtimeError)",
        js_codes,
    )
    closed = {f"closed_{int(code)}" for code in FATAL_CLOSES}
    shared = SHARED_CLIENT_CODES | closed
    py_codes = python_client_codes()
    same("shared client codes", "realtime.js", js_codes & shared, "docs/clients.md", shared)
    same("shared client codes", "the Python client", py_codes & shared, "docs/clients.md", shared)
    for side, codes in (("realtime.js", js_codes), ("the Python client", py_codes)):
        stray = {c for c in codes if c.startswith("closed_")} - closed
        assert not stray, f"{side} has close codes of its own: {stray}"


# --------------------------------------------------------------------------- AsyncAPI


@pytest.fixture
async def asyncapi(serve: Any) -> dict[str, Any]:
    """The document a server with auth.mode: jwt and an initial: last channel serves."""
    assert any(c.get("initial") == "last" for c in BASE["channels"].values())
    server: LiveServer = await serve(jwt_realtime())
    assert server.http is not None
    response = await server.http.get("/ws/asyncapi.json")
    assert response.status_code == 200, response.text
    document: dict[str, Any] = msgspec.json.decode(response.content)
    return document


def payload(document: dict[str, Any], ref: str) -> dict[str, Any]:
    """The payload schema of an operation's message ``$ref`` (#/channels/<c>/messages/<m>)."""
    _, _, channel, _, key = ref.split("/")
    message_ref = document["channels"][channel]["messages"][key]["$ref"]
    message = document["components"]["messages"][message_ref.rsplit("/", 1)[-1]]
    schema: dict[str, Any] = document["components"]["schemas"][
        message["payload"]["$ref"].rsplit("/", 1)[-1]
    ]
    return schema


async def test_the_served_asyncapi_document_agrees(asyncapi: dict[str, Any]) -> None:
    document = asyncapi
    js, schemas = js_protocol(), document["components"]["schemas"]
    operations = document["operations"]
    sent = [payload(document, m["$ref"]) for m in operations["all.send"]["messages"]]
    tagged = [s for s in sent if "enum" in s["properties"]["type"]]
    events = [s for s in sent if "enum" not in s["properties"]["type"]]
    sent_types = {t for s in tagged for t in s["properties"]["type"]["enum"]}
    same(
        "server message types",
        "AsyncAPI all.send",
        sent_types,
        "protocol CONTROL_TYPES",
        CONTROL_TYPES,
    )
    same(
        "server message types",
        "AsyncAPI all.send",
        sent_types,
        "realtime.js PROTOCOL.serverMessages",
        js["serverMessages"].values(),
    )
    assert len(events) == 1, "one message without a fixed type: the event"
    same(
        "the envelope's fields",
        "AsyncAPI's event payload",
        events[0]["properties"],
        "client.d.ts RealtimeMessage",
        dts_fields("RealtimeMessage"),
    )
    received = [payload(document, m["$ref"]) for m in operations["all.receive"]["messages"]]
    same(
        "client message types",
        "AsyncAPI all.receive",
        {t for s in received for t in s["properties"]["type"]["enum"]},
        "realtime.js PROTOCOL.clientMessages",
        js["clientMessages"].values(),
    )
    same(
        "in-band error codes",
        "AsyncAPI ErrorData.code",
        schemas["ErrorData"]["properties"]["code"]["enum"],
        "client.d.ts InBandErrorCode",
        dts_union("InBandErrorCode"),
    )
    same(
        "loss reasons",
        "AsyncAPI MessagesDroppedData.reason",
        schemas["MessagesDroppedData"]["properties"]["reason"]["enum"],
        "client.d.ts LossReason",
        dts_union("LossReason"),
    )
    description = document["info"]["description"]
    closes = re.search(r"Close codes:(.*?)\n\n", description, re.S)
    assert closes, "the AsyncAPI description has no 'Close codes:' paragraph"
    # "1000 normal, 1001 server shutting down, ...": each item starts with its code.
    described = {int(c) for c in re.findall(r"(?:^|,)\s*(\d{4})\b", closes.group(1))}
    same(
        "close codes",
        "the AsyncAPI description",
        described,
        "protocol CloseCode (but 1002 and 4000)",
        {int(c) for c in CloseCode} - UNDESCRIBED_CLOSES,
    )
    for name, value in js["closeCodes"].items():
        assert value in described or CloseCode[name] in UNDESCRIBED_CLOSES, (
            f"realtime.js PROTOCOL.closeCodes.{name} = {value}: the AsyncAPI description lacks it"
        )
