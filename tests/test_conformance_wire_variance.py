"""Wire variance of the server machine (conformance/adversary.py VARIANT_KINDS; issue 9 item 4) on a fixed step
list: every variant reaches the server, correct servers pass every one in both strengths, and each strength split
says what it should: refusing a leading-zero amount is a strict deviation only, a padded token may be refused or
accepted, an empty POST may be content or a voucher update but never content for free."""
from __future__ import annotations

import attrs
import pytest

from adapters.reference.server import SessionServer
from conformance.adversary import STRICT_ONLY_VARIANTS, VARIANT_KINDS
from conformance.harness import RunConfig
from conformance.machines import new_session
from conformance.reference_impl import ReferenceServer

# each variant an honest advance by one price (the run's deposit covers them all)
STEPS = [{"op": "request", "client": 0, "fault": "none", "key": True}] + [
    {"op": "adversary", "client": 0, "kind": kind} for kind in VARIANT_KINDS]


class _RefusesLeadingZeros(SessionServer):
    """Reads `cumulativeAmount` as canonical decimals only (a stricter reading of "Encoding Conventions")."""

    def handle(self, method, path, headers):
        auth = headers.get("authorization")
        if auth and '"cumulativeAmount":"00' in _decoded(auth.split(" ", 1)[-1]):
            return self._problem_reply("malformed-credential", "cumulativeAmount: not a canonical decimal", True)
        return super().handle(method, path, headers)


class _AcceptsPadding(SessionServer):
    """Accepts an Authorization token with base64 padding (a lenient decoder; no rule forbids it)."""

    def handle(self, method, path, headers):
        auth = headers.get("authorization")
        if auth:
            headers = dict(headers, authorization=auth.rstrip("= \t"))
        return super().handle(method, path, headers)


class _EmptyPostIsUpdate(SessionServer):
    """Reads a POST with an empty body as a voucher update (mppx's reading): accepted, charged nothing, 204."""

    def handle(self, method, path, headers):
        if method.upper() == "POST" and headers.get("content-length", "").strip() == "0":
            reply = super().handle("HEAD", path, headers)
            return attrs.evolve(reply, status=204) if reply.status == 200 else reply
        return super().handle(method, path, headers)


def _decoded(token: str) -> str:
    import base64

    return base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)).decode("utf-8", "replace")


def _server(cls, name):
    a = ReferenceServer(name)
    a.server_cls = cls
    return a


def refuses_leading_zeros():
    return _server(_RefusesLeadingZeros, "refuses-leading-zeros")


def accepts_padding():
    return _server(_AcceptsPadding, "accepts-padding")


def empty_post_is_update():
    return _server(_EmptyPostIsUpdate, "empty-post-is-update")


def _run(server: str, strength: str):
    s = new_session(RunConfig(client="model", server=server, strength=strength, deposit=40, wallet=60), "server")
    try:
        return [s.do(step) for step in STEPS]
    finally:
        s.close()


def _sent(results, kind):
    return [w for r in results if r.step.get("kind") == kind for w in r.wires if w.origin == "adversary"
            and w.amount is not None]


@pytest.mark.parametrize("strength", ["must", "strict"])
@pytest.mark.parametrize("server", ["reference", "legacy", "model", __name__ + ":accepts_padding",
                                    __name__ + ":empty_post_is_update"])
def test_correct_servers_pass_every_variant(server, strength):
    results = _run(server, strength)
    assert all(not r.violations for r in results), [(r.step, r.violations) for r in results if r.violations]
    for kind in VARIANT_KINDS:  # each variant reached the server as a paid request
        assert _sent(results, kind), kind


def test_each_variant_reads_as_the_wire_says():
    results = _run("reference", "strict")
    post = _sent(results, "either:empty_post")
    assert post[-1].method == "POST" and post[-1].status == 200 and post[-1].charged, post
    for kind in VARIANT_KINDS:  # the same credential is served; an altered challenge is refused
        assert (_sent(results, kind)[-1].status == 200) == (kind.startswith("same:") or kind == "either:empty_post"), (
            kind, _sent(results, kind))
    padded = _sent(results, "either:padded")[-1]
    assert padded.status != 200 and padded.problem == "malformed-credential"  # the reference reads nopad only
    served = _sent(_run(__name__ + ":accepts_padding", "strict"), "either:padded")[-1]
    assert served.status == 200 and served.charged
    update = _sent(_run(__name__ + ":empty_post_is_update", "strict"), "either:empty_post")[-1]
    assert update.status == 204 and not update.charged  # the voucher-update reading: accepted, nothing charged


def test_refusing_leading_zeros_is_a_strict_deviation_only():
    assert "same:leading_zeros" in STRICT_ONLY_VARIANTS
    spec = __name__ + ":refuses_leading_zeros"
    must = _run(spec, "must")
    assert all(not r.violations for r in must), [r.violations for r in must if r.violations]
    strict = [(r.step.get("kind"), p) for r in _run(spec, "strict") for p, _ in r.violations]
    assert ("same:leading_zeros", "SV") in strict, strict


@pytest.mark.parametrize("strength", ["must", "strict"])
def test_a_server_that_serves_a_bodiless_post_free_is_caught(strength):
    found = [(r.step.get("kind"), p) for r in _run("mutant:server-bodiless-post-free", strength)
             for p, _ in r.violations]
    assert any(k == "either:empty_post" for k, _ in found), found
