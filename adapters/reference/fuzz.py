"""The HTTP fuzzer of the reference server (issue 10 item 6: no 5xx for any input).

    python -m adapters.reference.fuzz [--examples 2000] [--http]

Builds requests the way a hostile client would (Hypothesis strategies below): random
`Authorization` text, base64 of random bytes or JSON, and mutations of a valid credential
(challenge fields replaced by lone surrogates or arbitrary JSON, payload fields replaced,
extra members, trailing junk), with random methods, `Payment-Payer` and `Idempotency-Key`
headers, against a server whose payer has opened a channel and paid once. For each input it
checks the answer: no 5xx; a rejection (4xx, 402) leaves the store byte-for-byte unchanged
and carries an RFC 9457 problem with a paymentauth.org type and a detail. It prints

    N inputs, M 5xx, K rejections that changed the store, J rejections without a problem type

and exits 1 unless M = K = J = 0. Without `--http` requests go to `SessionServer.handle`
in process (what uvicorn calls in its worker thread, surrogates included); with `--http`
they cross a real loopback socket to `serve()` (header values as UTF-8 bytes; a value
HTTP cannot carry is answered by the HTTP layer, counted apart as `transport-refused`).
`tests/test_reference_server_hostile.py` runs the in-process fuzzer with 400 examples.
"""
from __future__ import annotations

import argparse
import base64
import json
import sys
import tempfile
from collections import Counter
from typing import Any, Callable

import attrs
import httpx
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as hs

__all__ = ["authorizations", "requests", "FuzzCounts", "fuzz_server", "main"]

PATH = "/paid/fuzz"


def b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


_scalars = hs.one_of(
    hs.none(), hs.booleans(), hs.integers(min_value=-(2**300), max_value=2**300), hs.floats(allow_nan=True),
    hs.text(alphabet=hs.characters(categories=["L", "N", "P", "S", "Cs", "Cc"]), max_size=40),  # Cs: lone surrogates
    hs.sampled_from(["\ud800", "x\udfffy", "0x", "0x" + "00" * 32, "0x" + "ff" * 65, "1e999", "-1",
                     "340282366920938463463374607431768211456"]),
)
_json = hs.recursive(_scalars, lambda inner: hs.one_of(
    hs.lists(inner, max_size=4), hs.dictionaries(hs.text(max_size=12), inner, max_size=5)), max_leaves=12)
_with_surrogate = hs.builds(lambda a, b: a + "\udc80" + b, hs.text(max_size=5), hs.text(max_size=5))
_FIELDS = ["id", "realm", "method", "intent", "request", "expires", "digest", "opaque"]
_PAYLOAD_FIELDS = ["action", "channelId", "cumulativeAmount", "signature", "transaction", "authorizedSigner",
                   "additionalDeposit", "type"]


@hs.composite
def authorizations(draw, base_challenge: dict[str, Any], base_payload: dict[str, Any]) -> str:
    """An `Authorization` value: junk text, base64 junk, or a mutated valid credential."""
    kind = draw(hs.sampled_from(["text", "b64-bytes", "b64-json", "mutated"]))
    if kind == "text":
        return draw(hs.text(max_size=200))
    if kind == "b64-bytes":
        return "Payment " + b64(draw(hs.binary(max_size=200)))
    if kind == "b64-json":
        return "Payment " + b64(json.dumps(draw(_json)).encode())
    ch, payload = dict(base_challenge), dict(base_payload)
    for name in draw(hs.lists(hs.sampled_from(_FIELDS), max_size=3)):
        ch[name] = draw(hs.one_of(_with_surrogate, _json))
    for name in draw(hs.lists(hs.sampled_from(_PAYLOAD_FIELDS), max_size=3)):
        payload[name] = draw(_json)
    doc: Any = {"challenge": ch, "payload": payload}
    if draw(hs.booleans()):
        doc[draw(hs.text(max_size=8))] = draw(_json)
    raw = json.dumps(doc).encode("utf-8", "surrogatepass")
    return "Payment " + (b64(raw) + draw(hs.sampled_from(["", "=", "==", "!", " x"])))


def requests(base_challenge: dict[str, Any], base_payload: dict[str, Any], payer: str):
    """(method, headers) of one hostile request to the protected resource."""
    return hs.tuples(
        hs.sampled_from(["GET", "HEAD", "POST", "get", "DELETE"]),
        authorizations(base_challenge, base_payload),
        hs.one_of(hs.none(), hs.text(max_size=50), hs.just(payer)),
        hs.one_of(hs.none(), hs.text(max_size=30)),
    ).map(lambda t: (t[0], {k: v for k, v in (("authorization", t[1]), ("payment-payer", t[2]),
                                               ("idempotency-key", t[3])) if v is not None}))


@attrs.define
class FuzzCounts:
    inputs: int = 0
    server_errors: int = 0  # 5xx
    changed: int = 0  # rejections after which the store differed
    untyped: int = 0  # rejections without a paymentauth.org problem type and a detail
    transport_refused: int = 0  # --http: values HTTP cannot carry, refused before the server
    statuses: Counter = attrs.field(factory=Counter)
    examples: list[str] = attrs.field(factory=list)  # the first few failures

    @property
    def ok(self) -> bool:
        return self.server_errors == self.changed == self.untyped == 0

    def line(self) -> str:
        extra = f", {self.transport_refused} transport-refused" if self.transport_refused else ""
        return (f"{self.inputs} inputs, {self.server_errors} 5xx, {self.changed} rejections that changed the store, "
                f"{self.untyped} rejections without a problem type{extra}; statuses {dict(sorted(self.statuses.items()))}")


def _problem_ok(body: bytes) -> bool:
    try:
        doc = json.loads(body)
    except ValueError:
        return False
    return isinstance(doc, dict) and str(doc.get("type", "")).startswith("https://paymentauth.org/problems/") \
        and bool(doc.get("detail"))


def fuzz_server(server, send: Callable[[str, dict[str, str]], tuple[int, bytes]] | None, base_challenge: dict,
                base_payload: dict, payer: str, examples: int) -> FuzzCounts:
    """Run `examples` hostile requests against `server` (`send`: how a request reaches it; None:
    `server.handle` in process) and count what went wrong. Never raises for a finding."""
    counts = FuzzCounts()

    def in_process(method: str, headers: dict[str, str]) -> tuple[int, bytes]:
        try:
            reply = server.handle(method, PATH, headers)
        except Exception as exc:  # what uvicorn answers 500 to
            return 500, f"{type(exc).__name__}: {exc}".encode()
        return reply.status, reply.body

    deliver = send or in_process

    @settings(max_examples=examples, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True,
              database=None)
    @given(req=requests(base_challenge, base_payload, payer))
    def run(req):
        method, headers = req
        counts.inputs += 1
        before = server.dump()
        status, body = deliver(method, headers)
        counts.statuses[status] += 1
        if status == -1:
            counts.transport_refused += 1
            return
        what = None
        if status >= 500:
            counts.server_errors += 1
            what = f"{status}"
        elif status >= 400:
            if server.dump() != before:
                counts.changed += 1
                what = f"{status} changed the store"
            elif not _problem_ok(body):
                counts.untyped += 1
                what = f"{status} without a problem type"
        if what and len(counts.examples) < 5:
            counts.examples.append(f"{what}: {method} {headers!r:.300} -> {body[:200]!r}")

    run()
    return counts


def _http_sender(url: str) -> tuple[httpx.Client, Callable[[str, dict[str, str]], tuple[int, bytes]]]:
    client = httpx.Client(base_url=url, timeout=30)

    def send(method: str, headers: dict[str, str]) -> tuple[int, bytes]:
        raw = {k: v.encode("utf-8", "surrogateescape") if _encodable(v) else None for k, v in headers.items()}
        if any(v is None for v in raw.values()):
            return -1, b""
        try:
            resp = client.request(method, PATH, headers={k: v for k, v in raw.items()})
        except (httpx.LocalProtocolError, ValueError):
            return -1, b""  # not an HTTP request at all (e.g. a control character in a header value)
        if method.upper() == "HEAD":
            # HTTP carries no body in an answer to HEAD: the problem is seen by its media type only
            ok = resp.headers.get("content-type", "").startswith("application/problem+json")
            return resp.status_code, _HEAD_PROBLEM if ok else b""
        return resp.status_code, resp.content

    return client, send


_HEAD_PROBLEM = b'{"type":"https://paymentauth.org/problems/(HEAD: body not sent)","detail":"-"}'


def _encodable(value: str) -> bool:
    try:
        value.encode("utf-8", "surrogateescape")
        return True
    except UnicodeEncodeError:
        return False


def main(argv: list[str] | None = None) -> int:
    from adapters.chain import make_chain
    from wire.crypto import VoucherDomain, address_of, keccak, sign_voucher
    from wire import parse_www_authenticate

    from .bench import _InProcess
    from .client import SessionClient
    from .server import ServerConfig, SessionServer, serve

    ap = argparse.ArgumentParser(prog="python -m adapters.reference.fuzz")
    ap.add_argument("--examples", type=int, default=2000)
    ap.add_argument("--http", action="store_true", help="over a loopback socket to serve() (default: in process)")
    a = ap.parse_args(argv)
    chain = make_chain("memory")
    payee, payer_key = keccak(b"fuzz-payee"), keccak(b"fuzz-payer")
    chain.fund(payer_key, 10**9)
    with tempfile.TemporaryDirectory() as tmp:
        server = SessionServer(ServerConfig(chain=chain, payee_key=payee, db_path=f"{tmp}/fuzz.sqlite",
                                            voucher_rate=None))
        running = serve(server) if a.http else None
        target = running.url if running else _InProcess(server)
        client = SessionClient(target, payer_key, chain, max_deposit=10**6, max_price=server.config.price)
        http = None
        try:
            assert client.request("GET", "/paid/resource").status_code == 200
            cid = client.channel_id
            ch = parse_www_authenticate(dict(server.handle("GET", PATH, {}).headers)["www-authenticate"])[0]
            dom = VoucherDomain("v1", chain.chain_id, chain.escrow)
            amount = server.config.price
            payload = {"action": "voucher", "channelId": cid, "cumulativeAmount": str(amount),
                       "signature": sign_voucher(payer_key, dom, cid, amount)}
            send = None
            if running is not None:
                http, send = _http_sender(running.url)
            counts = fuzz_server(server, send, ch.to_wire(), payload, address_of(payer_key), a.examples)
        finally:
            client.close_http()
            if http is not None:
                http.close()
            if running is not None:
                running.stop()
            else:
                server.close()
    where = "over loopback HTTP" if a.http else "in process (SessionServer.handle)"
    print(f"reference server fuzz, {where}: {counts.line()}")
    for line in counts.examples:
        print("  " + line)
    return 0 if counts.ok else 1



if __name__ == "__main__":
    sys.exit(main())
