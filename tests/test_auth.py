"""The pure parts of authentication: token verification, token sources, origins, the
per-IP limiter, auth config checks, log redaction. No event loop, no server."""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from sanic_realtime import ConfigError
from sanic_realtime.auth import (
    Identity,
    TokenVerifier,
    decode_identity,
    encode_identity,
    find_credential,
    parse_subprotocols,
)
from sanic_realtime.config import parse_config
from sanic_realtime.exceptions import Unauthorized
from sanic_realtime.limits import KeyedRateLimiter
from sanic_realtime.origins import OriginPolicy
from sanic_realtime.redact import RedactSecrets, redact

from .tokens import SECRET, token


def verifier(**auth: Any) -> TokenVerifier:
    config = parse_config({"auth": {"mode": "jwt", **auth}})
    return TokenVerifier(config.auth)


def refusal(v: TokenVerifier, tok: str) -> Unauthorized:
    with pytest.raises(Unauthorized) as info:
        v.verify(tok)
    return info.value


# --------------------------------------------------------------------------- HS256


def test_hs256_identity_with_one_role_or_several() -> None:
    v = verifier(jwt_secret=SECRET)
    one = v.verify(token("alice", "admin"))
    assert (one.user_id, one.roles, one.role) == ("alice", ("admin",), "admin")
    assert one.expires_at is not None and one.expires_at > time.time()
    several = v.verify(token("carol", ["ops", "admin", "ops"]))
    assert (several.user_id, several.roles, several.role) == ("carol", ("ops", "admin"), "ops")
    # RFC 7519 says sub is a string (PyJWT checks it); a numeric id in another claim works.
    assert "Subject must be a string" in refusal(v, token(42)).message
    numeric = verifier(jwt_secret=SECRET, user_claim="user_id").verify(token(None, user_id=42))
    assert numeric.user_id == "42"
    none = v.verify(token("bob"))
    assert (none.roles, none.role) == ((), None)


@pytest.mark.parametrize(
    ("make", "code", "words"),
    [
        (lambda: token(exp_in=-5), "token_expired", "expired"),
        (lambda: token(key="y" * 40), "invalid_token", "Signature verification failed"),
        (lambda: "not.a.jwt", "invalid_token", "invalid token"),
        (lambda: token(exp_in=None), "invalid_token", "exp"),
        (lambda: token(sub=None), "invalid_token", "'sub' claim"),
        (lambda: token(sub=""), "invalid_token", "'sub' claim"),
        (lambda: token(role=7), "invalid_token", "'role' claim"),  # type: ignore[arg-type]
        (lambda: token(role=["a", 1]), "invalid_token", "'role' claim"),  # type: ignore[list-item]
        (lambda: jwt.encode({"sub": "a"}, None, algorithm="none"), "invalid_token", "invalid"),
        (lambda: "", "invalid_token", "empty"),
    ],
)
def test_hs256_refusals_say_why(make: Any, code: str, words: str) -> None:
    tok = make()
    e = refusal(verifier(jwt_secret=SECRET), tok)
    assert e.code == code and e.status == 401
    assert words in e.message
    if tok:
        assert tok not in e.message  # a refusal never echoes the token


def test_require_exp_can_be_turned_off_and_leeway_counts() -> None:
    assert (
        verifier(jwt_secret=SECRET, require_exp=False).verify(token(exp_in=None)).expires_at is None
    )
    v = verifier(jwt_secret=SECRET, leeway="10s")
    assert v.verify(token(exp_in=-5)).user_id == "alice"
    assert refusal(v, token(exp_in=-15)).code == "token_expired"
    # A caller's clock counts too (the hub's tests run on fake clocks).
    with pytest.raises(Unauthorized):
        v.verify(token(exp_in=60), now=time.time() + 100)


def test_audience_and_issuer() -> None:
    v = verifier(jwt_secret=SECRET, audience=["dash", "tui"], issuer="https://idp.example.com")
    good = token(aud="tui", iss="https://idp.example.com")
    assert v.verify(good).user_id == "alice"
    assert "Audience" in refusal(v, token(aud="other", iss="https://idp.example.com")).message
    assert "iss" in refusal(v, token(aud="dash", iss="https://evil.example.com")).message
    assert "aud" in refusal(v, token(iss="https://idp.example.com")).message
    # Not configured: a token's aud is accepted rather than refused.
    assert verifier(jwt_secret=SECRET).verify(token(aud="anything")).user_id == "alice"


def test_claims_by_dotted_path_and_url_name() -> None:
    v = verifier(jwt_secret=SECRET, user_claim="email", role_claim="realm_access.roles")
    ident = v.verify(token(email="a@x.io", realm_access={"roles": ["admin"]}))
    assert (ident.user_id, ident.roles) == ("a@x.io", ("admin",))
    url = verifier(jwt_secret=SECRET, role_claim="https://x.io/roles")
    assert url.verify(token(**{"https://x.io/roles": ["ops"]})).roles == ("ops",)


# --------------------------------------------------------------------------- public keys


def rsa_pair() -> tuple[Any, str]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return key, pem.decode()


def test_rs256_with_a_public_key_text_or_file(tmp_path: Path) -> None:
    private, public = rsa_pair()
    tok = token("carol", "ops", key=private, algorithm="RS256")
    assert verifier(algorithms=["RS256"], public_key=public).verify(tok).user_id == "carol"
    (tmp_path / "pub.pem").write_text(public)
    v = verifier(algorithms=["RS256"], public_key_file=str(tmp_path / "pub.pem"))
    assert v.verify(tok).roles == ("ops",)
    other, _ = rsa_pair()
    assert refusal(v, token(key=other, algorithm="RS256")).code == "invalid_token"
    # HS256 signed with the public key text must not pass (algorithm confusion).
    with pytest.raises(jwt.InvalidKeyError):
        jwt.encode({"sub": "x"}, public, algorithm="HS256")


def test_es256_with_a_jwks_file_picks_the_key_by_kid(tmp_path: Path) -> None:
    keys = {kid: ec.generate_private_key(ec.SECP256R1()) for kid in ("k1", "k2")}
    jwks = {
        "keys": [
            {**json.loads(jwt.algorithms.ECAlgorithm.to_jwk(k.public_key())), "kid": kid}
            for kid, k in keys.items()
        ]
    }
    (tmp_path / "jwks.json").write_text(json.dumps(jwks))
    v = verifier(algorithms=["ES256"], jwks_file=str(tmp_path / "jwks.json"))
    for kid, key in keys.items():
        tok = token(kid, key=key, algorithm="ES256", headers={"kid": kid})
        assert v.verify(tok).user_id == kid
    wrong = token("x", key=keys["k1"], algorithm="ES256", headers={"kid": "k2"})
    assert refusal(v, wrong).code == "invalid_token"
    unknown = token("x", key=keys["k1"], algorithm="ES256", headers={"kid": "k9"})
    assert "no key with kid 'k9'" in refusal(v, unknown).message
    no_kid = token("x", key=keys["k1"], algorithm="ES256")
    assert "no 'kid'" in refusal(v, no_kid).message


def test_bad_key_material_is_a_config_error_naming_the_key(tmp_path: Path) -> None:
    cases = [
        ({"algorithms": ["RS256"], "public_key": "not a pem"}, "realtime.auth.public_key"),
        (
            {"algorithms": ["RS256"], "public_key_file": str(tmp_path / "missing.pem")},
            "realtime.auth.public_key_file",
        ),
    ]
    (tmp_path / "bad.json").write_text('{"keys": 3}')
    cases.append(
        (
            {"algorithms": ["ES256"], "jwks_file": str(tmp_path / "bad.json")},
            "realtime.auth.jwks_file",
        )
    )
    for auth, path in cases:
        with pytest.raises(ConfigError) as info:
            verifier(**auth)
        assert info.value.path == path, info.value


@pytest.mark.parametrize(
    ("auth", "path", "words"),
    [
        ({}, "realtime.auth.jwt_secret", "needs a secret"),
        ({"jwt_secret": "short"}, "realtime.auth.jwt_secret", "at least 32 bytes"),
        (
            {"jwt_secret": "x" * 40, "algorithms": ["HS512"]},
            "realtime.auth.jwt_secret",
            "at least 64 bytes",
        ),
        ({"jwt_secret": SECRET, "algorithms": ["none"]}, "realtime.auth.algorithms[0]", "unsafe"),
        ({"jwt_secret": SECRET, "algorithms": ["HS999"]}, "realtime.auth.algorithms[0]", "unknown"),
        ({"jwt_secret": SECRET, "algorithms": []}, "realtime.auth.algorithms", "at least one"),
        (
            {"jwt_secret": SECRET, "algorithms": ["HS256", "RS256"]},
            "realtime.auth.algorithms",
            "do not mix",
        ),
        ({"algorithms": ["RS256"]}, "realtime.auth.public_key", "exactly one"),
        (
            {"algorithms": ["RS256"], "public_key": "a", "jwks_file": "b"},
            "realtime.auth.jwks_file",
            "exactly one",
        ),
        (
            {"algorithms": ["RS256"], "public_key": "a", "jwt_secret": SECRET},
            "realtime.auth.jwt_secret",
            "HS* algorithms",
        ),
        ({"jwt_secret": SECRET, "public_key": "a"}, "realtime.auth.public_key", "public-key"),
        ({"jwt_secret": SECRET, "ticket_ttl": 0}, "realtime.auth.ticket_ttl", "greater than 0"),
        ({"jwt_secret": SECRET, "user_claim": ""}, "realtime.auth.user_claim", "empty"),
        ({"jwt_secret": SECRET, "colour": 1}, "realtime.auth", "colour"),
    ],
)
def test_auth_config_checks(auth: dict[str, Any], path: str, words: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_config({"auth": {"mode": "jwt", **auth}})
    assert info.value.path == path and words in str(info.value), info.value


def test_limit_and_origin_config_checks() -> None:
    config = parse_config(
        {
            "connect_rate_limit": {"connections": 5, "per": "1m"},
            "max_subscriptions": 3,
            "max_connections_per_user": 2,
            "allowed_origins": ["https://*.example.com", "http://localhost:5173"],
        }
    )
    assert config.connect_rate_limit is not None and config.connect_rate_limit.per == 60
    for bad, path in (
        ({"connect_rate_limit": {"connections": 0}}, "realtime.connect_rate_limit.connections"),
        ({"connect_rate_limit": {"per": "0s"}}, "realtime.connect_rate_limit.per"),
        ({"max_subscriptions": 0}, "realtime.max_subscriptions"),
        ({"allowed_origins": ["https://a.*.com"]}, "realtime.allowed_origins[0]"),
        ({"allowed_origins": ["*.example.com"]}, "realtime.allowed_origins[0]"),
        ({"allowed_origins": ["*", "https://a..example.com"]}, "realtime.allowed_origins[1]"),
        ({"allowed_origins": ["https://*.example.com#"]}, "realtime.allowed_origins[0]"),
        ({"allowed_origins": ["https://u@example.com"]}, "realtime.allowed_origins[0]"),
        ({"allowed_origins": ["https://example.com/"]}, "realtime.allowed_origins[0]"),
        ({"allowed_origins": ["https://ex\\ample.com"]}, "realtime.allowed_origins[0]"),
        ({"allowed_origins": ["https://example.com:70000"]}, "realtime.allowed_origins[0]"),
        ({"allowed_origins": ["null"]}, "realtime.allowed_origins[0]"),
    ):
        with pytest.raises(ConfigError) as info:
            parse_config(bad)
        assert info.value.path == path, info.value


# --------------------------------------------------------------------------- token sources


def test_token_sources_in_order() -> None:
    q = {"token": "from-query", "ticket": "from-ticket"}
    assert find_credential("Bearer from-header", ["bearer", "from-sub"], q) == (
        "header",
        "from-header",
    )
    assert find_credential("Basic abc", ["bearer", "from-sub"], q) == ("subprotocol", "from-sub")
    assert find_credential(None, ["other"], q) == ("query", "from-query")
    assert find_credential(None, [], {"ticket": "t"}) == ("ticket", "t")
    assert find_credential(None, [], {}) is None
    with pytest.raises(Unauthorized):
        find_credential(None, ["bearer"], {})
    with pytest.raises(Unauthorized):
        find_credential("Bearer ", [], {})
    assert parse_subprotocols(["bearer, abc.def.ghi", "x"]) == ["bearer", "abc.def.ghi", "x"]


def test_identity_round_trips_through_a_ticket_value() -> None:
    ident = Identity(user_id="u", roles=("a", "b"), expires_at=12.5)
    assert decode_identity(encode_identity(ident)) == ident


# --------------------------------------------------------------------------- origins, limits


@pytest.mark.parametrize(
    ("origin", "allowed"),
    [
        (None, True),
        ("https://ops.example.com", True),
        ("https://a.b.example.com", True),
        ("HTTPS://OPS.EXAMPLE.COM", True),
        ("http://localhost:5173", True),
        ("https://example.com", False),
        ("http://ops.example.com", False),
        ("https://ops.example.com:8443", False),
        ("https://evil-example.com", False),
        ("https://example.com.evil.io", False),
        ("http://localhost:3000", False),
        ("null", False),
        # No browser sends these (issue 17, item 8): each was allowed before.
        ("https://evil.com#.example.com", False),
        ("https://evil.com?.example.com", False),
        ("https://user@a.example.com", False),
        ("https://a..example.com", False),
        ("https://evil.com\\.example.com", False),
        ("https://-a.example.com", False),
        ("https://a.example.com/", False),
        ("https://a.example.com:", False),
        ("https://a.example.com:443", True),  # the default port is no port
        ("http://localhost:05173", True),
    ],
)
def test_origin_patterns(origin: str | None, allowed: bool) -> None:
    policy = OriginPolicy(["https://*.example.com", "http://localhost:5173"])
    assert policy.allows(origin) is allowed
    assert OriginPolicy(["*"]).allows(origin)


def test_keyed_rate_limiter_per_key_and_bounded() -> None:
    limiter = KeyedRateLimiter(3, 1.0, max_keys=100)
    assert [limiter.hit("a", 0.0) for _ in range(3)] == [0.0, 0.0, 0.0]
    wait = limiter.hit("a", 0.0)
    assert wait == pytest.approx(1 / 3)
    assert limiter.hit("b", 0.0) == 0.0  # other keys are unaffected
    assert limiter.hit("a", 0.4) == 0.0  # refilled
    for i in range(1000):
        limiter.hit(f"ip{i}", 10.0 + i)
    assert len(limiter) <= 100


# --------------------------------------------------------------------------- redaction


def test_redact_urls_json_headers_and_bare_jwts() -> None:
    jwt_text = token("alice")
    text = (
        f"GET /ws/logs?level=warn&token={jwt_text}&x=1 ticket=abcdef123 "
        f'{{"type": "refresh", "token": "opaque-secret"}} Authorization: Bearer s3cr3t-value '
        f"bare {jwt_text}"
    )
    out = redact(text)
    for secret in (jwt_text, "abcdef123", "opaque-secret", "s3cr3t-value"):
        assert secret not in out
    assert "level=warn" in out and "x=1" in out and "token=[redacted]" in out


@pytest.mark.parametrize(
    ("text", "secret"),
    [
        ("GET /ws/logs?level=warn&tick%65t=opaque123&x=1", "opaque123"),
        ("GET /ws/logs?%74oken=%65yJhbGciOi", "yJhbGciOi"),
        ("GET /ws/logs?%54%4F%4B%45%4E=s3cret", "s3cret"),
        ("GET /ws/logs?access%5Ftoken=s3cret", "s3cret"),
        ('{"type": "refresh", "\\u0074oken": "\\u0065yJhbGciOi"}', "yJhbGciOi"),
        ("""< TEXT '{"type":"refresh","\\\\u0074oken":"opaque"}' [40 bytes]""", "opaque"),
    ],
    ids=[
        "percent-ticket",
        "percent-token",
        "percent-upper",
        "percent-underscore",
        "json-escape",
        "frame-log-repr",
    ],
)
def test_redact_decodes_names_first(text: str, secret: str) -> None:
    """Names as Sanic's query parser and a JSON decoder read them (issue 17, item 7)."""
    out = redact(text)
    assert secret not in out and "[redacted]" in out


def test_redact_keeps_other_names() -> None:
    text = 'GET /ws/logs?mytoken=1&tokens=2&level=warn {"tickets": "3"}'
    assert redact(text) == text


def test_filter_rewrites_message_extra_and_traceback() -> None:
    secret = token("alice")
    record = logging.makeLogRecord(
        {"msg": "url %s", "args": (f"/ws?token={secret}",), "request": f"GET /ws?ticket={secret}"}
    )
    try:
        raise RuntimeError(f"bad {secret}")
    except RuntimeError:
        import sys

        record.exc_info = sys.exc_info()
    assert RedactSecrets().filter(record)
    formatted = logging.Formatter("%(message)s %(request)s").format(record)
    assert secret not in formatted and "[redacted]" in formatted
