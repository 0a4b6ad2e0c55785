"""v2 deployments through the one harness: the deployment seam, the model's v2 escrow rules, the v2 wire rules,
and the reference and model adapters speaking v2 (descriptors, v2 vouchers, uint96) on memory-v2 and evm-v2."""
from __future__ import annotations

import json
import random

import attrs
import httpx
import pytest

from adapters.chain import ChainError, ZERO_ADDRESS, make_chain
from adapters.chain._common import compute_channel_id_v2
from adapters.chain.base import ChannelDescriptor
from adapters.chain.deployment import Deployment, deployment_of
from model import chain as mc
import wire
from model.base import Rejected
from wire.crypto import UINT96_MAX, UINT128_MAX, VoucherDomain, address_of, recover_voucher_signer, sign_voucher
from model.system import Config, initial

PAYER, PAYEE = b"\x11" * 32, b"\x22" * 32


def _funded(name: str) -> tuple[Deployment, str, str]:
    chain = make_chain(name)
    return deployment_of(chain), chain.fund(PAYER, 100), chain.fund(PAYEE, 0)


def _sig(dep: Deployment, cid: str, amount: int) -> bytes:
    return bytes.fromhex(sign_voucher(PAYER, dep.domain, cid, amount)[2:])


# ------------------------------------------------------------------------------------------- the seam


@pytest.mark.parametrize("name", ["memory", "memory-v2"])
def test_every_chain_operation_by_channel_id(name):
    dep, payer, payee = _funded(name)
    opened = dep.open_tx(PAYER, payee, 10, "0x" + "ab" * 32)
    assert (opened.descriptor is not None) == dep.is_v2
    dep.chain.broadcast(opened.raw)
    cid = opened.channel_id
    assert dep.model_channel(cid) == mc.EscrowChannel(cid, payer, payee, payer, 10)
    dep.chain.broadcast(dep.topup_tx(PAYER, cid, 5))
    dep.settle(PAYEE, cid, 3, _sig(dep, cid, 3))
    assert dep.model_channel(cid).settled == 3 and dep.model_channel(cid).deposit == 15
    dep.close(PAYEE, cid, 6, 4, _sig(dep, cid, 6))  # captures 4 of the voucher's 6
    ch = dep.model_channel(cid)
    assert (ch.settled, ch.finalized) == (4, True)
    assert dep.chain.balance_of(payee) == 4 and dep.chain.balance_of(payer) == 96


@pytest.mark.parametrize("name", ["memory", "memory-v2"])
def test_forced_close_and_time_by_channel_id(name):
    dep, payer, payee = _funded(name)
    opened = dep.open_tx(PAYER, payee, 10, "0x" + "cd" * 32)
    dep.chain.broadcast(opened.raw)
    dep.request_close(PAYER, opened.channel_id)
    with pytest.raises(ChainError) as exc:
        dep.withdraw(PAYER, opened.channel_id)
    assert exc.value.reason == "CloseNotReady"
    t = dep.now()
    dep.advance_time(dep.chain.grace_period)
    assert dep.now() >= t + dep.chain.grace_period
    dep.withdraw(PAYER, opened.channel_id)
    assert dep.model_channel(opened.channel_id).finalized and dep.chain.balance_of(payer) == 100


def test_v2_deployment_facts_and_descriptor():
    dep, payer, payee = _funded("memory-v2")
    assert dep.domain == VoucherDomain("v2", dep.chain_id, dep.escrow) and dep.domain.name == "TIP20 Channel Reserve"
    assert dep.max_amount == UINT96_MAX
    opened = dep.open_tx(PAYER, payee, 7, "0x" + "01" * 32)
    with pytest.raises(ChainError):  # not on chain yet: no record to read the descriptor from
        dep.descriptor(opened.channel_id)
    dep.chain.broadcast(opened.raw)
    assert dep.descriptor(opened.channel_id) == opened.descriptor
    md = dep.model_descriptor(opened.channel_id)
    assert mc.descriptor_channel_id(md, dep.escrow, dep.chain_id) == opened.channel_id
    j = dep.to_json()
    assert (j["sessionProtocol"], j["amountType"], j["maxAmount"], j["channelId"]) == (
        "v2", "uint96", str(UINT96_MAX), "descriptor")
    assert j["voucherDomain"]["name"] == "TIP20 Channel Reserve"
    with pytest.raises(ChainError):
        dep.check_amount(UINT96_MAX + 1)


def test_v1_deployment_has_no_descriptor_and_no_operator():
    dep, payer, payee = _funded("memory")
    assert dep.domain.name == "Tempo Stream Channel" and dep.max_amount == UINT128_MAX
    assert dep.to_json()["channelId"] == "escrow-open"
    opened = dep.open_tx(PAYER, payee, 7, "0x" + "01" * 32)
    dep.chain.broadcast(opened.raw)
    assert dep.descriptor(opened.channel_id) is None and dep.model_descriptor(opened.channel_id) is None
    with pytest.raises(ChainError):
        dep.open_tx(PAYER, payee, 7, "0x" + "02" * 32, operator="0x" + "33" * 20)


# ------------------------------------------------------------------------------------- the model (v2)


def _addr(rng):
    return "0x" + rng.randbytes(20).hex()


def test_model_descriptor_id_is_the_chains():
    rng = random.Random(8)
    for _ in range(50):
        fields = (_addr(rng), _addr(rng), rng.choice([ZERO_ADDRESS, _addr(rng)]), _addr(rng),
                  "0x" + rng.randbytes(32).hex(), rng.choice([ZERO_ADDRESS, _addr(rng)]), "0x" + rng.randbytes(32).hex())
        escrow, chain_id = _addr(rng), rng.randrange(1, 2**40)
        assert mc.descriptor_channel_id(mc.Descriptor(*fields), escrow, chain_id) == \
            compute_channel_id_v2(ChannelDescriptor(*fields), escrow, chain_id)


def test_model_v2_bound_operator_and_descriptor_open():
    payer, payee, operator, token = "0x" + "aa" * 20, "0x" + "bb" * 20, "0x" + "cc" * 20, "0x" + "dd" * 20
    chain = mc.mint(mc.Chain(max_amount=mc.MAX_AMOUNT["v2"]), payer, UINT96_MAX + 10)
    assert isinstance(mc.open_channel(chain, payer, "c", payee, UINT96_MAX + 1), Rejected)
    d = mc.Descriptor(payer, payee, operator, token, "0x" + "01" * 32, ZERO_ADDRESS, "0x" + "02" * 32)
    assert mc.open_descriptor(chain, payee, d, 5, "0x" + "ee" * 20, 1).code == "NotPayer"
    chain, cid = mc.open_descriptor(chain, payer, d, UINT96_MAX - 1, "0x" + "ee" * 20, 1)
    assert cid == mc.descriptor_channel_id(d, "0x" + "ee" * 20, 1)
    assert chain.channel(cid).signer == payer and chain.channel(cid).operator == operator
    assert mc.top_up(chain, payer, cid, 2).code == "Panic(0x11)"  # past 2^96-1
    assert not isinstance(mc.top_up(chain, payer, cid, 1), Rejected)  # exactly the bound
    from model.records import Voucher

    assert mc.settle(chain, payee, Voucher(cid, UINT96_MAX + 1, payer)).code == "InvalidArgument"
    settled = mc.settle(chain, operator, Voucher(cid, 3, payer))  # the operator settles for the payee
    assert settled.balance(payee) == 3
    assert mc.close(settled, "0x" + "99" * 20, Voucher(cid, 4, payer), 4).code == "NotPayee"
    closed = mc.close(settled, operator, Voucher(cid, 4, payer), 4)
    assert closed.channel(cid).finalized and closed.balance(payee) == 4


def test_model_v1_keeps_uint128():
    chain = mc.mint(mc.Chain(), "0x" + "aa" * 20, UINT128_MAX)
    assert not isinstance(mc.open_channel(chain, "0x" + "aa" * 20, "c", "0x" + "bb" * 20, UINT96_MAX + 1), Rejected)


def test_system_config_deployment_sets_the_bound():
    from model import client as mcl
    from model import server as msv

    cfg = Config(msv.ServerConfig(payee="0x" + "bb" * 20, price=1), (mcl.ClientConfig(name="a", payer="0x" + "aa" * 20),))
    assert initial(cfg).chain.max_amount == UINT128_MAX
    assert initial(attrs.evolve(cfg, deployment="v2")).chain.max_amount == UINT96_MAX


# ----------------------------------------------------------------------------------------- the wire (v2)


def _credential(payload) -> wire.Credential:
    ch = wire.Challenge(id="x", realm="r", method="tempo", intent="session", request="e30")
    return wire.Credential(challenge=ch, payload=payload)


DESC = wire.Descriptor(payer="0x" + "11" * 20, payee="0x" + "22" * 20, operator=ZERO_ADDRESS, token="0x" + "33" * 20,
                       salt="0x" + "44" * 32, authorized_signer=ZERO_ADDRESS, expiring_nonce_hash="0x" + "55" * 32)
CID, SIG = "0x" + "66" * 32, "0x" + "77" * 64 + "1b"


def test_v2_credentials_round_trip_with_the_descriptor():
    for payload in (wire.VoucherPayload(channel_id=CID, cumulative_amount=5, signature=SIG, descriptor=DESC),
                    wire.ClosePayload(channel_id=CID, cumulative_amount=5, signature=SIG, descriptor=DESC),
                    wire.TopUpPayload(channel_id=CID, transaction="0x01", additional_deposit=2, descriptor=DESC),
                    wire.OpenPayload(channel_id=CID, transaction="0x01", cumulative_amount=1, signature=SIG,
                                     descriptor=DESC)):
        header = wire.encode_authorization(_credential(payload))
        body = json.loads(wire.b64url_decode(header.split(" ", 1)[1]))
        assert body["payload"]["descriptor"]["expiringNonceHash"] == DESC.expiring_nonce_hash
        assert set(body["payload"]["descriptor"]) == {"payer", "payee", "operator", "token", "salt",
                                                      "authorizedSigner", "expiringNonceHash"}
        back = wire.parse_authorization_for(header, "v2")
        assert back.payload.descriptor == DESC
        assert wire.parse_authorization_for(header, "v1").payload.channel_id == CID


def test_v2_credential_rules_are_clear_wire_errors():
    bare = wire.encode_authorization(_credential(wire.VoucherPayload(channel_id=CID, cumulative_amount=5, signature=SIG)))
    assert wire.parse_authorization_for(bare, "v1").payload.cumulative_amount == 5
    with pytest.raises(wire.MalformedCredential) as exc:
        wire.parse_authorization_for(bare, "v2")
    assert exc.value.field == "payload.descriptor"
    big = wire.encode_authorization(_credential(
        wire.VoucherPayload(channel_id=CID, cumulative_amount=UINT96_MAX + 1, signature=SIG, descriptor=DESC)))
    assert wire.parse_authorization_for(big, "v1").payload.cumulative_amount == UINT96_MAX + 1
    with pytest.raises(wire.MalformedCredential) as exc:
        wire.parse_authorization_for(big, "v2")
    assert exc.value.field == "payload.cumulativeAmount" and "2^96-1" in exc.value.what
    topup = wire.encode_authorization(_credential(
        wire.TopUpPayload(channel_id=CID, transaction="0x01", additional_deposit=UINT96_MAX + 1, descriptor=DESC)))
    with pytest.raises(wire.MalformedCredential) as exc:
        wire.parse_authorization_for(topup, "v2")
    assert exc.value.field == "payload.additionalDeposit"
    signer = wire.encode_authorization(_credential(wire.OpenPayload(
        channel_id=CID, transaction="0x01", cumulative_amount=1, signature=SIG, descriptor=DESC,
        authorized_signer="0x" + "88" * 20)))
    with pytest.raises(wire.MalformedCredential) as exc:
        wire.parse_authorization_for(signer, "v2")
    assert exc.value.field == "payload.authorizedSigner"
    bad_desc = json.loads(wire.b64url_decode(bare.split(" ", 1)[1]))
    bad_desc["payload"]["descriptor"] = {"payer": "0x12"}
    with pytest.raises(wire.MalformedCredential):
        wire.parse_authorization("Payment " + wire.b64url_encode(json.dumps(bad_desc).encode()))
    with pytest.raises(ValueError):
        wire.check_credential_protocol(wire.parse_authorization(bare), "v3")


# ------------------------------------------------------------------------- the adapters on a v2 deployment


class _Spy:
    """Stands between the harness network and the server: keeps every request's Authorization and every
    response's WWW-Authenticate."""

    def __init__(self, inner):
        self.inner, self.auths, self.challenges = inner, [], []

    def handle(self, request: httpx.Request) -> httpx.Response:
        if "authorization" in request.headers:
            self.auths.append(request.headers["authorization"])
        resp = self.inner.handle(request)
        if "www-authenticate" in resp.headers:
            self.challenges.append(resp.headers["www-authenticate"])
        return resp

    def __getattr__(self, name):
        return getattr(self.inner, name)


STEPS = [{"op": "request", "client": 0}, {"op": "request", "client": 0}, {"op": "request", "client": 1},
         {"op": "top_up", "client": 0}, {"op": "settle"}, {"op": "request", "client": 0},
         {"op": "close", "client": 0}, {"op": "request", "client": 1}, {"op": "request_close", "client": 1},
         {"op": "advance_time"}, {"op": "request", "client": 1}]


@pytest.mark.parametrize("client,server", [("reference", "reference"), ("model", "model"), ("reference", "model"),
                                           ("model", "reference")])
def test_a_v2_session_speaks_v2_on_the_wire(client, server, tmp_path):
    from conformance.harness import RunConfig, Session

    s = Session(RunConfig(client=client, server=server, chain="memory-v2", seed=3), str(tmp_path))
    try:
        assert s.env.deployment.protocol == "v2" and s.cfg.deployment == "v2" and s.twin.chain.max_amount == UINT96_MAX
        spy = _Spy(s.net.server)
        s.net.server = spy
        results = [s.do(step) for step in STEPS]
        assert not [r.violations for r in results if r.violations]
        assert [r.outcome for r in results][:3] == ["served"] * 3
        dep, actions = s.env.deployment, set()
        for auth in spy.auths:
            cred = wire.parse_authorization_for(auth, "v2")  # every credential carries the descriptor
            p = cred.payload
            actions.add(p.action)
            d = p.descriptor
            assert compute_channel_id_v2(ChannelDescriptor(d.payer, d.payee, d.operator, d.token, d.salt,
                                                           d.authorized_signer, d.expiring_nonce_hash),
                                         dep.escrow, dep.chain_id) == p.channel_id
            if getattr(p, "signature", None):
                assert recover_voucher_signer(dep.domain, p.channel_id, p.cumulative_amount, p.signature) == d.payer
        assert {"open", "voucher", "close"} <= actions
        reqs = [c.decoded_request() for h in spy.challenges for c in wire.parse_www_authenticate(h)]
        assert reqs and all(r.method_details.session_protocol == "v2" for r in reqs)
        snaps = [r.method_details.session_snapshot for r in reqs if r.method_details.session_snapshot is not None]
        assert snaps and all(sn.descriptor is not None for sn in snaps)
    finally:
        s.close()


def _reference_server(tmp_path, chain_name="memory-v2"):
    from conformance.interface import Env
    from conformance.reference_impl import ReferenceServer

    chain = make_chain(chain_name)
    chain.fund(PAYEE, 0)
    chain.fund(PAYER, 100)
    srv = ReferenceServer()
    srv.reset(Env(chain, PAYEE, 1, True, "v2", 0, str(tmp_path)))
    return srv, chain


def _ask(srv, payload, challenge=None) -> httpx.Response:
    if challenge is None:
        resp = srv.handle(httpx.Request("GET", "http://server.test/paid/resource"))
        challenge = wire.parse_www_authenticate(resp.headers["www-authenticate"])[0]
    auth = wire.encode_authorization(wire.Credential(challenge=challenge, payload=payload))
    return srv.handle(httpx.Request("GET", "http://server.test/paid/resource", headers={"Authorization": auth}))


def _problem(resp) -> str:
    return wire.parse_problem(resp.content).type.rsplit("/", 1)[-1]


def test_reference_server_v2_refuses_what_v2_forbids(tmp_path):
    from conformance.model_impl import wire_descriptor

    srv, chain = _reference_server(tmp_path)
    dep = deployment_of(chain)
    payee = address_of(PAYEE)
    try:
        opened = dep.open_tx(PAYER, payee, 10, "0x" + "0a" * 32)
        desc = wire_descriptor(opened.descriptor)
        sig = sign_voucher(PAYER, dep.domain, opened.channel_id, 1)
        no_desc = wire.OpenPayload(channel_id=opened.channel_id, transaction=opened.raw, cumulative_amount=1,
                                   signature=sig)
        resp = _ask(srv, no_desc)
        assert resp.status_code == 402 and _problem(resp) == "malformed-credential"
        other = desc.model_copy(update={"salt": "0x" + "0b" * 32})
        resp = _ask(srv, no_desc.model_copy(update={"descriptor": other}))
        assert resp.status_code == 402 and _problem(resp) == "verification-failed"
        v1_sig = sign_voucher(PAYER, VoucherDomain("v1", dep.chain_id, dep.escrow), opened.channel_id, 1)
        resp = _ask(srv, no_desc.model_copy(update={"descriptor": desc, "signature": v1_sig}))
        assert resp.status_code == 402 and _problem(resp) in ("signer-mismatch", "invalid-signature")
        assert not chain.get_channel(opened.channel_id).exists  # nothing was broadcast
        resp = _ask(srv, no_desc.model_copy(update={"descriptor": desc}))
        assert resp.status_code == 200
        assert srv.record(opened.channel_id).accepted == 1
        sig2 = sign_voucher(PAYER, dep.domain, opened.channel_id, 2)
        voucher = wire.VoucherPayload(channel_id=opened.channel_id, cumulative_amount=2, signature=sig2)
        assert _problem(_ask(srv, voucher)) == "malformed-credential"
        wrong_payee = desc.model_copy(update={"payee": "0x" + "99" * 20})
        assert _problem(_ask(srv, voucher.model_copy(update={"descriptor": wrong_payee}))) == "verification-failed"
        assert _ask(srv, voucher.model_copy(update={"descriptor": desc})).status_code == 200
        srv.settle(opened.channel_id)
        assert chain.get_channel(opened.channel_id).settled == 2
    finally:
        srv.close_resources()


def test_model_server_v2_refuses_a_credential_without_its_channels_descriptor(tmp_path):
    from conformance.interface import Env
    from conformance.model_impl import ModelServer, wire_descriptor

    chain = make_chain("memory-v2")
    chain.fund(PAYEE, 0)
    chain.fund(PAYER, 100)
    srv = ModelServer()
    srv.reset(Env(chain, PAYEE, 1, True, "v2", 0, str(tmp_path)))
    dep = deployment_of(chain)
    opened = dep.open_tx(PAYER, address_of(PAYEE), 10, "0x" + "0c" * 32)
    sig = sign_voucher(PAYER, dep.domain, opened.channel_id, 1)
    base = wire.OpenPayload(channel_id=opened.channel_id, transaction=opened.raw, cumulative_amount=1, signature=sig)
    assert _problem(_ask(srv, base)) == "malformed-credential"
    other = wire_descriptor(opened.descriptor).model_copy(update={"operator": "0x" + "98" * 20})
    assert _problem(_ask(srv, base.model_copy(update={"descriptor": other}))) == "verification-failed"
    assert _ask(srv, base.model_copy(update={"descriptor": wire_descriptor(opened.descriptor)})).status_code == 200
    assert srv.record(opened.channel_id).accepted == 1


def test_reference_client_refuses_a_v1_challenge_on_a_v2_deployment(tmp_path):
    from adapters.reference.client import ChallengeRejected, SessionClient

    chain = make_chain("memory-v2")
    chain.fund(PAYER, 100)

    class V1Server:
        def handle_request(self, request):
            md = wire.MethodDetails(escrow_contract=chain.escrow, chain_id=chain.chain_id, session_protocol="v1")
            req = wire.SessionRequest(amount=1, currency=chain.token, recipient=address_of(PAYEE), method_details=md)
            c = wire.Challenge.issue(b"k", realm="r", request=req, expires="2999-01-01T00:00:00Z")
            return httpx.Response(402, headers={"www-authenticate": wire.format_www_authenticate(c)})

    class T(httpx.BaseTransport):
        def handle_request(self, request):
            return V1Server().handle_request(request)

    c = SessionClient(T(), PAYER, chain, max_price=1, max_deposit=10)
    with pytest.raises(ChallengeRejected, match="sessionProtocol v1"):
        c.request("GET", "/paid/resource")


def test_matrix_runs_every_bundled_pair_on_each_deployment():
    from argparse import Namespace

    from conformance.__main__ import _matrix_runs, deployment_chains
    from conformance.expectations import MATRIX

    assert deployment_chains("memory", "v1,v2") == ["memory", "memory-v2"]
    assert deployment_chains("evm", "v2") == ["evm-v2"]
    assert deployment_chains("memory-v2", "v1") == ["memory"]
    with pytest.raises(SystemExit):
        deployment_chains("memory", "v3")
    runs = _matrix_runs(Namespace(chain="memory", deployments="v1,v2", include=None), MATRIX)
    from conformance.bridge_spec import is_bridge

    bridged = lambda row: any(is_bridge(x) for x in row[:2])  # noqa: E731
    bundled = [row for row in MATRIX if not bridged(row)]
    for chain in ("memory", "memory-v2"):
        assert [row for c, row in runs if c == chain and not bridged(row)] == bundled
    # a bridge adapter's rows run once, on the deployment its release speaks (mppx 0.11.0: v2; mppx-v1: v1)
    assert [c for c, row in runs if bridged(row)] == [
        "memory" if "mppx-v1" in row[:2] else "memory-v2" for row in MATRIX if bridged(row)]


def test_adversary_skips_what_no_v2_voucher_can_say(tmp_path):
    """In the machines' "bound" money world an attack above the deposit would need a voucher past 2^96-1: on a v2
    deployment nothing can be signed for it, so the adversary sends nothing (and does not crash)."""
    from conformance.adversary import AdversarySession
    from conformance.harness import RunConfig, machine_config
    from conformance.machines import MONEY

    price, deposit, top_up, wallet = MONEY["bound"]
    for chain in ("memory", "memory-v2"):
        rc = RunConfig(client="model", server="reference", chain=chain, price=price, deposit=deposit, top_up=top_up,
                       wallet=wallet)
        (tmp_path / chain).mkdir()
        s = AdversarySession(machine_config(rc, "server"), str(tmp_path / chain))
        try:
            assert s.do({"op": "request", "client": 0}).outcome == "served"
            for _ in range(6):  # 7 prices: three top-ups take the deposit to 2^96 - 2^93 + 6
                s.do({"op": "request", "client": 0})
            assert s.twin.chain.channel("alice.1").deposit + price > UINT96_MAX
            r = s.do({"op": "adversary", "client": 0, "kind": "above_deposit"})
            assert not r.violations
            sent = [w for w in r.wires if w.origin == "adversary" and w.action == "voucher"]
            assert bool(sent) == (chain == "memory"), sent  # v1 can still sign it; v2 cannot
        finally:
            s.close()
