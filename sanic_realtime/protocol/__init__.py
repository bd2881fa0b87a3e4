"""The wire protocol, defined once (docs/protocol.md): every server message
(:mod:`.server`), every client message (:mod:`.client`), the close codes and the error
codes (:mod:`.codes`). Pure: msgspec and the standard library only.

The server encodes what it sends from these Structs, the Python client encodes what it
sends and reads the codes from here, the AsyncAPI document is derived from them, and a
test checks that the browser client (``static/realtime.js``, ``client.d.ts``) names the
same message types and codes.
"""

from __future__ import annotations

from .client import (
    CLIENT_MESSAGE_TYPES,
    MAX_JSON_DEPTH,
    NESTED_TOO_DEEPLY,
    ClientMessage,
    Ping,
    Refresh,
    Subscribe,
    Unsubscribe,
    decode_client_message,
    too_deep,
)
from .codes import (
    HTTP_ERROR_CODES,
    IN_BAND_ERROR_CODES,
    CloseCode,
    ErrorCode,
    HttpErrorCode,
    InBandErrorCode,
)
from .server import (
    CONTROL_TYPES,
    SERVER_MESSAGES,
    ConnectionEstablished,
    ConnectionEstablishedData,
    ControlMessage,
    ErrorData,
    EventEnvelope,
    InBandError,
    InitialState,
    LossReason,
    MessagesDropped,
    MessagesDroppedData,
    Pong,
    PongData,
    Refreshed,
    RefreshedData,
    Subscribed,
    SubscribedData,
    Unsubscribed,
    UnsubscribedData,
    encode,
)

__all__ = [
    "CLIENT_MESSAGE_TYPES",
    "CONTROL_TYPES",
    "HTTP_ERROR_CODES",
    "IN_BAND_ERROR_CODES",
    "MAX_JSON_DEPTH",
    "NESTED_TOO_DEEPLY",
    "SERVER_MESSAGES",
    "ClientMessage",
    "CloseCode",
    "ConnectionEstablished",
    "ConnectionEstablishedData",
    "ControlMessage",
    "ErrorCode",
    "ErrorData",
    "EventEnvelope",
    "HttpErrorCode",
    "InBandError",
    "InBandErrorCode",
    "InitialState",
    "LossReason",
    "MessagesDropped",
    "MessagesDroppedData",
    "Ping",
    "Pong",
    "PongData",
    "Refresh",
    "Refreshed",
    "RefreshedData",
    "Subscribe",
    "Subscribed",
    "SubscribedData",
    "Unsubscribe",
    "Unsubscribed",
    "UnsubscribedData",
    "decode_client_message",
    "encode",
    "too_deep",
]
