"""Shared set-up for the reference implementation tests (tests/test_reference_*.py).

Servers run under uvicorn on 127.0.0.1 (a free port); clients talk real HTTP.
"""
from __future__ import annotations

import base64
import contextlib
import itertools
import json
import os
from typing import Any, Iterator

import httpx

from adapters.chain import make_chain
from adapters.reference.server import RunningServer, ServerConfig, SessionServer, serve
from wire.crypto import VoucherDomain, address_of, keccak, sign_voucher
from wire import Challenge, challenge_id, parse_problem, parse_receipt, parse_www_authenticate

PRICE = 1_000
PAYEE_KEY = bytes.fromhex("a1" * 32)
SECRET = b"reference-test-secret"
PATH = "/paid/resource"
_keys = itertools.count(1)

_evm = None


def evm_chain():
    """One evm chain per test session (deploying costs about a second); tests use fresh keys."""
    global _evm
    if _evm is None:
        _evm = make_chain("evm")
        _evm.fund(PAYEE_KEY, 10**6)
    return _evm


def memory_chain():
    chain = make_chain("memory")
    chain.fund(PAYEE_KEY, 10**6)
    return chain


def new_key(chain, amount: int = 10**9) -> bytes:
    """A fresh funded payer key."""
    key = keccak(b"reference-tests-payer-%d-%d" % (os.getpid(), next(_keys)))
    chain.fund(key, amount)
    return key


def config(chain, tmp_path, name: str = "server", **kw: Any) -> ServerConfig:
    kw.setdefault("price", PRICE)
    kw.setdefault("secret", SECRET)
    kw.setdefault("voucher_rate", None)  # tests race many requests at once; the limiter has its own tests
    return ServerConfig(chain=chain, payee_key=PAYEE_KEY, db_path=str(tmp_path / f"{name}.sqlite"), **kw)


@contextlib.contextmanager
def running(cfg: ServerConfig | SessionServer) -> Iterator[RunningServer]:
    rs = serve(cfg)
    try:
        yield rs
    finally:
        rs.stop()


def domain(chain) -> VoucherDomain:
    return VoucherDomain("v1", chain.chain_id, chain.escrow)


def sign(chain, key: bytes, channel_id: str, amount: int) -> str:
    return sign_voucher(key, domain(chain), channel_id, amount)


def b64(obj: Any) -> str:
    raw = obj if isinstance(obj, bytes) else json.dumps(obj, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def unb64(text: str) -> Any:
    return json.loads(base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)))


def get_challenge(url: str, payer: str | None = None, method: str = "GET") -> tuple[httpx.Response, Challenge]:
    headers = {"Payment-Payer": payer} if payer else {}
    resp = httpx.request(method, url + PATH, headers=headers)
    assert resp.status_code == 402, resp.text
    return resp, parse_www_authenticate(resp.headers["www-authenticate"])[0]


def echo(ch: Challenge) -> dict[str, Any]:
    """The credential's `challenge` object for a parsed challenge."""
    return ch.to_wire()


def rebind(echoed: dict[str, Any], secret: bytes = SECRET) -> dict[str, Any]:
    """Recompute the HMAC id of an edited challenge echo (a challenge the server *could* have issued)."""
    out = dict(echoed)
    out["id"] = challenge_id(
        secret, out["realm"], out["method"], out["intent"], out["request"], out.get("expires"), out.get("digest"),
        out.get("opaque"),
    )
    return out


def authorization(challenge: dict[str, Any], payload: dict[str, Any]) -> str:
    return "Payment " + b64({"challenge": challenge, "payload": payload})


def voucher_payload(channel_id: str, amount: int | str, signature: str, action: str = "voucher") -> dict[str, Any]:
    return {"action": action, "channelId": channel_id, "cumulativeAmount": str(amount), "signature": signature}


def problem_slug(resp: httpx.Response) -> str:
    return parse_problem(resp.content).type.rsplit("/", 1)[-1]


def receipt(resp: httpx.Response):
    return parse_receipt(resp.headers["payment-receipt"])


def assert_problem(resp: httpx.Response, status: int, slug: str) -> None:
    assert resp.status_code == status, (resp.status_code, resp.text)
    assert resp.headers["content-type"].startswith("application/problem+json")
    assert problem_slug(resp) == slug, resp.text
    assert "payment-receipt" not in resp.headers
    if status == 402:
        fresh = parse_www_authenticate(resp.headers["www-authenticate"])
        assert fresh and fresh[0].method == "tempo" and fresh[0].intent == "session"
        assert resp.headers["cache-control"] == "no-store"


def payer_of(key: bytes) -> str:
    return address_of(key)
