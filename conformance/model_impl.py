"""The `model` adapters: model/ rules speaking the real wire.

`ModelServer` answers real HTTP (wire/headers.py, wire/crypto.py
signatures, wire/profiles.py hints) by translating each request into a
`model.messages.Request`, running `model.server.handle` on a model snapshot of
the real chain, then applying to the real chain what the model's chain did
(broadcast the open/topUp transaction, close). `ModelClient` follows
`model.client.next_credential` and friends and signs real vouchers.

They are the executable spec over HTTP: the strict strength compares every
other implementation with what these do.
"""
from __future__ import annotations

import hashlib
import threading
from typing import Optional

import attrs
import httpx

from adapters.chain.base import ChainError
from model import chain as mchain
from model import client as mcl
from model import server as msv
from model.base import fm_set
from wire.crypto import VoucherDomain, address_of, keccak, recover_voucher_signer, sign_voucher, CryptoError
from model.messages import Challenge as MChallenge
from model.messages import Credential as MCredential
from model.messages import Receipt as MReceipt
from model.messages import Request as MRequest
from wire.profiles import hints_from_request, method_details_with_hints, recoverer
from model.records import Voucher
from model.system import round_trip_limit
import wire

from .interface import (BASE_URL, IDEMPOTENCY_HEADER, PAYER_HEADER, AccountingRecord, ClientParams, ClientView, Env,
                        Outcome)

REALM = "model.tempo.local"
EXPIRES = "2999-01-01T00:00:00Z"
TIMESTAMP = "2026-01-01T00:00:00Z"


def deployment(chain):
    """The run's deployment (adapters.chain.deployment): protocol, voucher domain, channel-id operations."""
    from adapters.chain.deployment import deployment_of

    return deployment_of(chain)


def domain_of(chain) -> VoucherDomain:
    """The voucher domain of the chain's deployment (v1 "Tempo Stream Channel" or v2 "TIP20 Channel Reserve")."""
    return deployment(chain).domain


def wire_descriptor(d) -> Optional[wire.Descriptor]:
    """A descriptor record (adapters' ChannelDescriptor or model.chain.Descriptor) in its wire form."""
    return None if d is None else wire.Descriptor.of(d)


def model_descriptor(d: wire.Descriptor) -> mchain.Descriptor:
    return mchain.Descriptor(d.payer, d.payee, d.operator, d.token, d.salt, d.authorized_signer,
                             d.expiring_nonce_hash)


def descriptor_ok(p, payee: str, token: str, escrow: str, chain_id: int) -> bool:
    """v2 (draft, "Channel Descriptor"; rules E1b, E8): the payload's descriptor names its channelId, pays
    `payee` in `token`, and names no operator (the model server advertises none)."""
    d = model_descriptor(p.descriptor)
    return (mchain.descriptor_channel_id(d, escrow, chain_id) == p.channel_id
            and d.payee == payee and d.token == token and d.operator == mchain.ZERO_ADDRESS)


def recover_or_none(domain: VoucherDomain, cid: str, amount: int, sig: str) -> Optional[str]:
    try:
        return recover_voucher_signer(domain, cid, amount, sig)
    except CryptoError:
        return None


def escrow_channel(chain, cid: str) -> Optional[mchain.EscrowChannel]:
    return deployment(chain).model_channel(cid)


def snapshot(chain, cids, addresses, used=frozenset()) -> mchain.Chain:
    """A model Chain holding the real chain's view of `cids` and the balances of `addresses`."""
    m = mchain.Chain(time=chain.now(), used_txs=frozenset(used), max_amount=deployment(chain).max_amount)
    chans = ()
    for cid in sorted(set(c for c in cids if c)):
        ch = escrow_channel(chain, cid)
        if ch is not None:
            chans = fm_set(chans, cid, ch)
    bals = ()
    for a in sorted(set(a for a in addresses if a)):
        bals = fm_set(bals, a, chain.balance_of(a))
    return attrs.evolve(m, channels=chans, balances=bals)


def model_credential(domain: VoucherDomain, p, tx) -> tuple[MCredential, str]:
    """(the model's Credential, the transaction id) of a wire payload; `tx` is its decoded transaction
    (open and topUp), signers recovered from the signatures."""
    cid = p.channel_id
    voucher = None
    sig = getattr(p, "signature", None)
    if sig is not None:
        voucher = Voucher(cid, p.cumulative_amount, recover_or_none(domain, cid, p.cumulative_amount, sig))
    raw = getattr(p, "transaction", None)
    txid = "0x" + keccak(raw.encode()).hex() if raw else ""
    if p.action == "open":
        return MCredential("open", cid, voucher, amount=tx.amount, payer=tx.sender), txid
    if p.action == "topUp":
        return MCredential("topUp", cid, amount=tx.amount, payer=tx.sender, tx_nonce=txid), txid
    return MCredential(p.action, cid, voucher), txid


# ---------------------------------------------------------------------------- server


class ModelServer:
    """model.server over HTTP. `hinted` may be forced by the bundled name."""

    def __init__(self, name: str = "model", hinted: Optional[bool] = None, cfg_hook=None):
        self.name = name
        self.force_hinted = hinted
        self.cfg_hook = cfg_hook  # mutants: tweak the model ServerConfig
        # One request at a time: `handle` reads the model state, computes and writes it back, so two threads
        # would lose an update (conformance/concurrency.py drives it from several threads).
        self.lock = threading.RLock()

    def in_mode(self, hinted: bool) -> "ModelServer":
        """model.server over HTTP built hinted or legacy, not yet reset (B1 on implementations, conformance/b1.py)."""
        return type(self)(f"{self.name}-{'hinted' if hinted else 'legacy'}", hinted=hinted, cfg_hook=self.cfg_hook)

    def reset(self, env: Env) -> None:
        self.env = env
        self.chain = env.chain
        self.payee = address_of(env.payee_key)
        self.dep = env.deployment
        self.domain = self.dep.domain
        hinted = env.hinted if self.force_hinted is None else self.force_hinted
        cfg = msv.ServerConfig(payee=self.payee, price=env.price, hinted=hinted, hint_encoding=env.hint_encoding,
                               suggested_deposit=env.suggested_deposit)
        self.cfg = self.cfg_hook(cfg) if self.cfg_hook else cfg
        self.state = msv.Server()
        self.sigs: dict[tuple[str, int], str] = {}
        self.used: set = set()
        self.secret = hashlib.sha256(b"model-server" + str(env.seed).encode()).digest()

    def restart(self) -> None:
        pass  # every field is durable (draft, "Crash Safety")

    def record(self, channel_id: str) -> Optional[AccountingRecord]:
        rec = self.state.record(channel_id)
        if rec is None:
            return None
        rec = msv.refresh(rec, self._snap([channel_id]))
        return AccountingRecord(rec.channel_id, rec.accepted, rec.spent, rec.deposit, rec.settled, rec.finalized,
                             rec.payer, self.sigs.get((rec.channel_id, rec.highest.amount)))

    def settle(self, channel_id: str) -> None:
        with self.lock:
            self._settle(channel_id)

    def _settle(self, channel_id: str) -> None:
        rec = self.state.record(channel_id)
        if rec is None:
            return
        snap = self._snap([channel_id])
        done = msv.settle_highest(self.cfg, self.state, snap, channel_id)
        if isinstance(done, msv.Rejected):
            return
        sig = self.sigs[(channel_id, rec.highest.amount)]
        try:
            self.dep.settle(self.env.payee_key, channel_id, rec.highest.amount, bytes.fromhex(sig[2:]))
        except ChainError:
            return
        self.state = done[0]

    def _snap(self, extra, payers=()) -> mchain.Chain:
        cids = [cid for cid, _ in self.state.channels] + list(extra)
        return snapshot(self.chain, cids, list(payers) + [self.payee], self.used)

    # -- HTTP

    def _challenge(self, ch: MChallenge) -> str:
        base = wire.MethodDetails(escrow_contract=self.chain.escrow, chain_id=self.chain.chain_id,
                                  session_protocol="v2" if self.dep.is_v2 else None)
        sig = None
        if ch.hints is not None and ch.hints.proof is not None:
            sig = self.sigs.get((ch.hints.proof.channel_id, ch.hints.proof.amount))
        desc = None
        if self.dep.is_v2 and ch.hints is not None:
            try:
                desc = wire_descriptor(self.dep.descriptor(ch.hints.channel_id))
            except ChainError:
                desc = None
        md = method_details_with_hints(base, ch.hints, self.cfg.hint_encoding, chain_id=self.chain.chain_id,
                                       escrow=self.chain.escrow, highest_voucher_signature=sig, descriptor=desc)
        req = wire.SessionRequest(amount=ch.price, suggested_deposit=ch.suggested_deposit, currency=self.chain.token,
                                  recipient=self.payee, method_details=md)
        c = wire.Challenge.issue(self.secret, realm=REALM, request=req, expires=EXPIRES)
        return wire.format_www_authenticate(c)

    def _problem(self, status: int, slug: str, challenge: Optional[MChallenge], **ext) -> httpx.Response:
        headers = {"content-type": "application/problem+json"}
        if challenge is not None:
            headers["www-authenticate"] = self._challenge(challenge)
        body = wire.encode_problem(wire.problem(slug, None, **ext))
        return httpx.Response(status, headers=headers, content=body)

    def handle(self, request: httpx.Request) -> httpx.Response:
        with self.lock:
            return self._handle(request)

    def _handle(self, request: httpx.Request) -> httpx.Response:
        method = request.method.upper()
        content = method != "HEAD"
        payer = request.headers.get(PAYER_HEADER, "").strip().lower()
        key = request.headers.get(IDEMPOTENCY_HEADER)
        auth = request.headers.get("authorization")
        if not auth:
            _, _, resp = msv.handle(self.cfg, self.state, self._snap([], [payer]), MRequest(payer, content))
            return self._render(resp, None, None)
        try:
            cred = wire.parse_authorization_for(auth, self.dep.protocol)
        except wire.WireError:
            ch = msv.author_challenge(self.cfg, self.state, self._snap([], [payer]), payer, content)
            return self._problem(402, "malformed-credential", ch)
        if not wire.verify_challenge_id(self.secret, cred.challenge):
            ch = msv.author_challenge(self.cfg, self.state, self._snap([], [payer]), payer, content)
            return self._problem(402, "challenge-not-found", ch)
        p = cred.payload
        cid = p.channel_id
        tx = None
        raw = getattr(p, "transaction", None)
        if raw is not None:
            try:
                tx = self.chain.decode_tx(raw)
            except ChainError:
                tx = None
            ok = (tx is not None and tx.kind == p.action and tx.channel_id == cid and tx.to == self.chain.escrow
                  and (tx.kind != "open" or self.dep.is_v2 or (tx.payee == self.payee and tx.token == self.chain.token))
                  and (not self.dep.is_v2 or model_descriptor(p.descriptor) == mchain.Descriptor(*tx.descriptor.as_abi())))
            if not ok:
                ch = msv.author_challenge(self.cfg, self.state, self._snap([cid], [payer]), payer, content)
                return self._problem(402, "verification-failed", ch, channel_id=cid)
        if self.dep.is_v2 and not self._descriptor_ok(p):
            ch = msv.author_challenge(self.cfg, self.state, self._snap([], [payer]), payer, content)
            return self._problem(402, "verification-failed", ch, channel_id=cid)
        if not payer:
            # Hint resolution without a Payment-Payer header: the payer of the credential's channel (the
            # reference server does the same: "without that header, the channel of the rejected credential")
            rec = self.state.record(cid)
            payer = rec.payer if rec is not None else (tx.sender if tx is not None else "")
        mcred, txid = model_credential(self.domain, p, tx)
        voucher, sig = mcred.voucher, getattr(p, "signature", None)
        snap = self._snap([cid], [payer, tx.sender if tx else ""])
        t = msv.transition(self.cfg, self.state, snap, MRequest(payer, content, mcred, key))
        server, after, resp = t.server, t.chain, t.response
        tx_hash = None
        # Carry out on the real chain the transition's effects (the model's chain already applied them).
        try:
            for effect in t.effects:
                if effect.kind == "close":
                    tx_hash = self.dep.close(self.env.payee_key, cid, voucher.amount, effect.capture,
                                             bytes.fromhex(sig[2:]))
                else:
                    tx_hash = self.chain.broadcast(raw)
                    if effect.kind == "top_up":
                        self.used.add((cid, txid))
        except ChainError:
            ch = msv.author_challenge(self.cfg, self.state, self._snap([cid], [payer]), payer, content)
            return self._problem(402, "verification-failed", ch, channel_id=cid)
        ch = after.channel(cid)
        if voucher is not None and ch is not None and voucher.signer == ch.signer:
            self.sigs.setdefault((cid, voucher.amount), sig)  # only the channel signer's voucher proves
        before = self.state.record(cid)
        self.state = server
        return self._render(resp, cred, tx_hash, before)

    def _descriptor_ok(self, p) -> bool:
        return descriptor_ok(p, self.payee, self.chain.token, self.chain.escrow, self.chain.chain_id)

    def _render(self, resp, cred, tx_hash, before=None) -> httpx.Response:
        if resp.status == 200:
            r = resp.receipt
            rec = self.state.record(r.channel_id)
            if rec is not None:  # units consumed by this request (draft "Receipt Generation"), not the running count
                rec = attrs.evolve(rec, units=rec.units - (before.units if before is not None else 0))
            receipt = wire.Receipt(timestamp=TIMESTAMP, reference=r.channel_id,
                                   challenge_id=cred.challenge.id if cred else "none", channel_id=r.channel_id,
                                   accepted_cumulative=r.accepted, spent=r.spent,
                                   units=rec.units if rec is not None else None,
                                   tx_hash=tx_hash if r.capture is not None or tx_hash else None)
            return httpx.Response(200, headers={"payment-receipt": wire.encode_receipt(receipt)},
                                  content=b"content")
        ext = {}
        if resp.required_top_up is not None:
            ext["required_top_up"] = resp.required_top_up
        if cred is not None:
            ext["channel_id"] = cred.payload.channel_id
        return self._problem(resp.status, resp.problem, resp.challenge, **ext)


# ---------------------------------------------------------------------------- client


def challenge_from_response(resp: httpx.Response, domain: VoucherDomain):
    """(wire challenge, model Challenge) from a 402, or (None, None)."""
    value = resp.headers.get("www-authenticate")
    if not value:
        return None, None
    try:
        found = [c for c in wire.parse_www_authenticate(value) if c.method == "tempo" and c.intent == "session"]
        if not found:
            return None, None
        wc = found[0]
        req = wc.decoded_request()
    except wire.WireError:
        return None, None
    try:
        hints = hints_from_request(req, recoverer(domain))
    except wire.WireError:
        hints = None
    md = req.method_details
    foreign = md is not None and (md.escrow_contract.lower() != domain.verifying_contract.lower()
                                  or (md.chain_id is not None and int(md.chain_id) != domain.chain_id))
    return wc, MChallenge(price=req.amount, hints=hints, suggested_deposit=req.suggested_deposit, foreign=foreign)


def receipt_from_response(resp: httpx.Response, closing: bool = False) -> Optional[MReceipt]:
    value = resp.headers.get("payment-receipt")
    if not value:
        return None
    try:
        r = wire.parse_receipt(value)
    except wire.WireError:
        return None
    return MReceipt(r.channel_id, r.accepted_cumulative, r.spent, capture=r.spent if closing else None)


def problem_slug(resp: httpx.Response) -> str:
    try:
        p = wire.parse_problem(resp.content)
        return p.type.rsplit("/", 1)[-1]
    except wire.WireError:
        return f"http-{resp.status_code}"


class ModelClient:
    """model.client over HTTP."""

    MAX_ROUND_TRIPS = 6
    max_paid_attempts: Optional[int] = 3  # its retry budget, as the reference client's (PRICES_PER_REQUEST)

    def __init__(self, name: str = "model", hinted: Optional[bool] = None, cfg_hook=None):
        self.name = name
        self.force_hinted = hinted
        self.cfg_hook = cfg_hook

    def reset(self, env: Env, params: ClientParams, transport: httpx.BaseTransport) -> None:
        self.env, self.params = env, params
        self.chain = env.chain
        self.key = params.key
        self.addr = address_of(params.key)
        self.dep = env.deployment
        self.domain = self.dep.domain
        self.payee = address_of(env.payee_key)
        self.descriptors: dict = {}  # v2: channel id -> wire descriptor of the channels it opened
        hinted = params.hinted if self.force_hinted is None else self.force_hinted
        cfg = mcl.ClientConfig(name=params.name, payer=self.addr, hinted=hinted, deposit=params.deposit,
                               top_up=params.top_up, max_unproven=params.max_unproven, persist=params.persist,
                               max_price=env.price, max_paid_attempts=self.max_paid_attempts)
        self.cfg = self.cfg_hook(cfg) if self.cfg_hook else cfg
        self.st = mcl.ClientState()
        self.http = httpx.Client(transport=transport, base_url=BASE_URL)
        self.opened = 0
        self.txs: dict = {}

    def close_resources(self) -> None:
        self.http.close()

    def restart(self, keep_persisted: bool) -> None:
        cfg = self.cfg if keep_persisted else attrs.evolve(self.cfg, persist=False)
        self.st = mcl.restart(cfg, self.st)

    def holdings(self) -> list[str]:
        """The channels it still knows (pays on, or can close or withdraw from): property ST."""
        return list(mcl.holdings(self.st))

    def view(self) -> ClientView:
        e = self.st.entry
        if e is None:
            return ClientView(None)
        return ClientView(e.channel_id, e.accepted, e.spent, e.signed_max)

    # -- helpers

    def _snap(self, challenge: Optional[MChallenge], extra=()) -> mchain.Chain:
        cids = list(extra) + [e.channel_id for e in (self.st.entry, self.st.persisted) + self.st.kept if e is not None]
        if challenge is not None and challenge.hints is not None:
            cids.append(challenge.hints.channel_id)
        cids = [c for c in cids if c.startswith("0x") and len(c) == 66]
        return snapshot(self.chain, cids, [self.addr])

    def _rename(self, old: str, new: str) -> None:
        def fix(e):
            return attrs.evolve(e, channel_id=new) if e is not None and e.channel_id == old else e
        self.st = attrs.evolve(self.st, entry=fix(self.st.entry), persisted=fix(self.st.persisted))

    def _wire_payload(self, mc: MCredential):
        if mc.action == "open":
            salt = "0x" + keccak(self.key + b"salt" + f"{self.params.name}:{self.env.seed}:{self.opened}".encode()).hex()
            self.opened += 1
            opened = self.dep.open_tx(self.key, self.payee, mc.amount, salt, self.addr)
            cid, raw = opened.channel_id, opened.raw
            desc = wire_descriptor(opened.descriptor)
            if desc is not None:
                self.descriptors[cid] = desc
            self._rename(mc.channel_id, cid)
            sig = sign_voucher(self.key, self.domain, cid, mc.voucher.amount)
            return wire.OpenPayload(channel_id=cid, transaction=raw, cumulative_amount=mc.voucher.amount,
                                    signature=sig, authorized_signer=self.addr, descriptor=desc)
        desc = self._descriptor(mc.channel_id)
        if mc.action == "topUp":
            raw = self.dep.topup_tx(self.key, mc.channel_id, mc.amount)
            return wire.TopUpPayload(channel_id=mc.channel_id, transaction=raw, additional_deposit=mc.amount,
                                     descriptor=desc)
        sig = sign_voucher(self.key, self.domain, mc.channel_id, mc.voucher.amount)
        cls = wire.VoucherPayload if mc.action == "voucher" else wire.ClosePayload
        return cls(channel_id=mc.channel_id, cumulative_amount=mc.voucher.amount, signature=sig, descriptor=desc)

    def _descriptor(self, cid: str) -> Optional[wire.Descriptor]:
        """v2: the channel's descriptor (its own open's, else the escrow's record of the id); v1: None."""
        if not self.dep.is_v2:
            return None
        if cid not in self.descriptors:
            self.descriptors[cid] = wire_descriptor(self.dep.descriptor(cid))
        return self.descriptors[cid]

    def _send(self, method: str, path: str, auth: Optional[str], key: Optional[str]) -> httpx.Response:
        headers = {PAYER_HEADER: self.addr}
        if auth:
            headers["Authorization"] = auth
        if key:
            headers[IDEMPOTENCY_HEADER] = key
        return self.http.request(method, path, headers=headers)

    def _credential(self, wc, payload) -> str:
        cred = wire.Credential(challenge=wc, source=f"did:pkh:eip155:{self.chain.chain_id}:{self.addr}",
                               payload=payload)
        return wire.encode_authorization(cred)

    def _receive(self, resp: httpx.Response, cid: str, closing: bool = False) -> None:
        if _ok(resp):
            r = receipt_from_response(resp, closing)
            if r is not None:
                self.st = mcl.on_response_receipt(self.cfg, self.st, r)
        elif resp.status_code == 410:
            self.st = mcl.on_gone(self.cfg, self.st, self._snap(None, extra=(cid,)), cid)

    def _fresh(self, method, path):
        resp = self._send(method, path, None, None)
        return self._challenge(resp)

    def _challenge(self, resp: httpx.Response):
        """(wire challenge, model Challenge) of a 402: the hints' highestVoucher carries its recovered signer."""
        return challenge_from_response(resp, self.domain)

    # -- the protocol

    def request(self, method: str, path: str, idempotency_key: Optional[str] = None) -> Outcome:
        content = method.upper() != "HEAD"
        try:
            return self._request(method, path, idempotency_key if content else None, content)
        except httpx.TransportError:
            return Outcome("unknown")

    def _request(self, method, path, key, content) -> Outcome:
        self.st = attrs.evolve(self.st, requests=self.st.requests + 1)
        wc, challenge = self._fresh(method, path)
        if challenge is None:
            return Outcome("failed:no-challenge")
        trips, attempts, budget = 1, 0, self.cfg.max_paid_attempts
        authed = False  # this request sent its authentication voucher (rule UA3: at most one)
        while True:
            if trips >= round_trip_limit(self.cfg) or (budget is not None and attempts >= budget):
                return Outcome("failed:gave-up")
            made = mcl.next_credential(self.cfg, self.st, challenge, self._snap(challenge), content, authed)
            if isinstance(made, mcl.Refused):
                return Outcome(f"refused:{made.reason}")
            self.st, mc = made
            authed = authed or mc.authenticates
            attempts += mc.voucher is not None
            payload = self._wire_payload(mc)
            cid = payload.channel_id
            resp = self._send(method, path, self._credential(wc, payload),
                              key if mc.action in ("open", "voucher") else None)
            trips += 1
            self._receive(resp, cid)
            if _ok(resp) and mc.action == "topUp":
                wc, challenge = self._fresh(method, path)
                trips += 1
                if challenge is None:
                    return Outcome("failed:no-challenge")
                continue
            if _ok(resp):
                return Outcome("served", resp.status_code)
            if resp.status_code == 410:
                wc, challenge = self._fresh(method, path)
                trips += 1
                if challenge is None:
                    return Outcome("failed:no-challenge")
                continue
            wc2, ch2 = self._challenge(resp)
            if ch2 is None:
                return Outcome(f"failed:{problem_slug(resp)}", resp.status_code)
            wc, challenge = wc2, ch2

    def close(self) -> Outcome:
        """Cooperative close of its channel (HEAD-carried management)."""
        try:
            wc, challenge = self._fresh("HEAD", "/paid/resource")
            if challenge is None:
                return Outcome("failed:no-challenge")
            made = mcl.close_credential(self.cfg, self.st, challenge, self._snap(challenge))
            if made is None:
                return Outcome("noop")
            if isinstance(made, mcl.Refused):
                return Outcome(f"refused:{made.reason}")
            self.st, mc = made
            payload = self._wire_payload(mc)
            resp = self._send("HEAD", "/paid/resource", self._credential(wc, payload), None)
            self._receive(resp, payload.channel_id, closing=True)
            return Outcome("done" if _ok(resp) else f"failed:{problem_slug(resp)}", resp.status_code)
        except httpx.TransportError:
            return Outcome("unknown")


def _ok(resp: httpx.Response) -> bool:
    """A success answer: the draft names no status for management (topUp, close, a HEAD voucher); 200 and mppx's
    204 No Content (with its receipt) are both success."""
    return 200 <= resp.status_code < 300


# Factories by import path (`--client conformance.model_impl:model_legacy_client`); the bundled names use them too.
def model_server() -> ModelServer:
    return ModelServer("model")


def model_legacy_server() -> ModelServer:
    return ModelServer("model-legacy", hinted=False)


def model_client() -> ModelClient:
    return ModelClient("model")


def model_legacy_client() -> ModelClient:
    return ModelClient("model-legacy", hinted=False)
