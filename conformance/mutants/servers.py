"""Server mutants: the reference server with one rule broken (each a realistic bug)."""
from __future__ import annotations

import contextlib
import threading

import attrs

from adapters.reference.server import SessionServer

from ..reference_impl import ReferenceServer


def _adapter(name: str, cls) -> ReferenceServer:
    a = ReferenceServer(name)
    a.server_cls = cls
    return a


class AcceptsLower(SessionServer):
    """Bug: a voucher below acceptedCumulative is treated like an idempotent retry."""

    def _accept(self, tx, rec, st, amount, signature):
        if amount < rec.accepted_cumulative:
            amount, signature = rec.accepted_cumulative, rec.highest_signature
        return super()._accept(tx, rec, st, amount, signature)


class AcceptsAboveDeposit(SessionServer):
    """Bug: the deposit check reads a stale, unbounded deposit."""

    def _accept(self, tx, rec, st, amount, signature):
        return super()._accept(tx, rec, attrs.evolve(st, deposit=max(st.deposit, amount)), amount, signature)


class ChargesHead(SessionServer):
    """Bug: every request with a voucher is charged, HEAD included."""

    def _serve(self, tx, rec, method, path, content, cred, key, tx_hash=None):
        return super()._serve(tx, rec, method, path, True, cred, key, tx_hash)


class FreeReplay(SessionServer):
    """Bug: a replayed voucher (no advance) is served without charging."""

    _replayed = False

    def _accept(self, tx, rec, st, amount, signature):
        self._replayed = amount == rec.accepted_cumulative
        return super()._accept(tx, rec, st, amount, signature)

    def _serve(self, tx, rec, method, path, content, cred, key, tx_hash=None):
        replayed, self._replayed = self._replayed, False
        if replayed and content and key is None:
            reply = super()._serve(tx, rec, method, path, False, cred, key, tx_hash)
            return attrs.evolve(reply, body=b'{"content":true}')
        return super()._serve(tx, rec, method, path, content, cred, key, tx_hash)


class _NoClosePending:
    def __init__(self, chain):
        self._chain = chain

    def __getattr__(self, name):
        return getattr(self._chain, name)

    def get_channel(self, cid):
        return attrs.evolve(self._chain.get_channel(cid), close_requested_at=0)


class HintsClosing(SessionServer):
    """Bug: hint resolution ignores a pending close (reads a cached channel state)."""

    def _hints_for(self, rec, content):
        real = self.chain
        self.chain = _NoClosePending(real)
        try:
            return super()._hints_for(rec, content)
        finally:
            self.chain = real


class RequiredSpentPlusPrice(SessionServer):
    """Bug (the first draft): requiredCumulative = spent + price."""

    def _hints_for(self, rec, content):
        hints, sig = super()._hints_for(rec, content)
        if hints is not None and hints.required is not None:
            hints = attrs.evolve(hints, required=rec.spent + (self.config.price if content else 0))
        return hints, sig


def accepts_lower_server():
    return _adapter("server-accepts-lower-voucher", AcceptsLower)


def accepts_above_deposit_server():
    return _adapter("server-accepts-above-deposit", AcceptsAboveDeposit)


def charges_head_server():
    return _adapter("server-charges-head", ChargesHead)


def free_replay_server():
    return _adapter("server-free-replay", FreeReplay)


def hints_closing_server():
    return _adapter("server-hints-closing-channel", HintsClosing)


def required_spent_plus_price_server():
    return _adapter("server-required-spent-plus-price", RequiredSpentPlusPrice)


# --- bugs from the session fixes in mppx's history and from mppx 0.11 itself (FINDINGS.md) ---

class AcceptsHighS(SessionServer):
    """Bug (mppx 0.11 accepts high-s; draft "Signature Malleability"): the malleated twin of a
    valid signature is normalized instead of refused, and stored as the highest voucher."""

    def _recover(self, channel_id, amount, signature):
        from wire.crypto import SECP256K1_HALF_N, to_high_s

        raw = bytes.fromhex(signature[2:]) if isinstance(signature, str) else signature
        if len(raw) == 65 and int.from_bytes(raw[32:64], "big") > SECP256K1_HALF_N:
            return super()._recover(channel_id, amount, to_high_s(signature))
        return super()._recover(channel_id, amount, signature)


class _CloseCapturing:
    """The deployment, except that a cooperative close captures `capture(chain, channel_id, cumulative_amount)`."""

    def __init__(self, deployment, capture):
        self._deployment, self._capture = deployment, capture

    def __getattr__(self, name):
        return getattr(self._deployment, name)

    def close(self, payee_key, channel_id, cumulative_amount, capture_amount, signature):
        capture = self._capture(self._deployment.chain, channel_id, cumulative_amount)
        return self._deployment.close(payee_key, channel_id, cumulative_amount, capture, signature)


class _WrongCloseCapture(SessionServer):
    """A close that captures the wrong amount (subclasses say which): the deployment is swapped for the close
    only (the server's chain operations go through its deployment, adapters/chain/deployment.py)."""

    @staticmethod
    def _capture(chain, channel_id, cumulative_amount):  # pragma: no cover - abstract
        raise NotImplementedError

    def _close(self, cred, p):
        real = self.deployment
        self.deployment = _CloseCapturing(real, self._capture)
        try:
            return super()._close(cred, p)
        finally:
            self.deployment = real


class CloseCapturesSettled(_WrongCloseCapture):
    """Bug: close captures only what was already settled, forgetting the unsettled spent (a close right
    after an advance gives the payer back what it was served)."""

    @staticmethod
    def _capture(chain, channel_id, cumulative_amount):
        return chain.get_channel(channel_id).settled


class CloseCapturesVoucher(_WrongCloseCapture):
    """Bug (mppx close-capture fixes): close captures the close voucher's whole amount, not
    max(spent, settled) (draft "Cooperative Close")."""

    @staticmethod
    def _capture(chain, channel_id, cumulative_amount):
        return cumulative_amount  # what the v1 close captures without a capture amount


class AcceptsWhileClosing(SessionServer):
    """Bug (mppx: charges accepted on close-pending channels): vouchers are accepted while a
    forced close is pending (draft "Voucher Verification" 5)."""

    def _accept(self, tx, rec, st, amount, signature):
        return super()._accept(tx, rec, attrs.evolve(st, close_requested_at=0), amount, signature)


class IgnoresIdempotencyKey(SessionServer):
    """Bug (mppx 0.11 ignores Idempotency-Key): responses are neither stored nor replayed,
    so a retried request is charged again."""

    def _replay(self, cid, key, content):
        return None

    def _serve(self, tx, rec, method, path, content, cred, key, tx_hash=None):
        return super()._serve(tx, rec, method, path, content, cred, None, tx_hash)


def accepts_high_s_server():
    return _adapter("server-accepts-high-s", AcceptsHighS)


def close_captures_voucher_server():
    return _adapter("server-close-captures-voucher", CloseCapturesVoucher)


def accepts_while_closing_server():
    return _adapter("server-accepts-while-closing", AcceptsWhileClosing)


def ignores_idempotency_key_server():
    return _adapter("server-ignores-idempotency-key", IgnoresIdempotencyKey)


def close_captures_settled_server():
    return _adapter("server-close-captures-settled", CloseCapturesSettled)


class SkipsChallengeBinding(SessionServer):
    """Bug: checks the echoed challenge's HMAC id but reads the price, escrow and chain from its own config,
    never comparing them with the echoed request (a client can echo an altered request)."""

    def _verify_challenge(self, ch):
        from wire import decode_request, verify_challenge_id

        if not verify_challenge_id(self.config.secret, ch):
            try:
                return decode_request(ch.request)  # the id did not match: trusted anyway
            except Exception:
                pass
        return super()._verify_challenge(ch)


def skips_challenge_binding_server():
    return _adapter("server-skips-challenge-binding", SkipsChallengeBinding)


class TrustsSource(SessionServer):
    """Bug: treats the credential's informational `source` as the payer's identity and refuses a valid voucher
    when it names someone else (httpauth: `source` is an optional payer identifier, not an authorization)."""

    def _dispatch(self, method, path, content, cred, request, key):
        from adapters.reference.server import _Reject

        src, payers = (cred.source or "").lower(), self._payers_of(cred)
        if src and payers and not src.endswith(tuple(a.lower() for a in payers)):
            raise _Reject("verification-failed", f"source {cred.source} is not the channel's payer")
        return super()._dispatch(method, path, content, cred, request, key)

    def _payers_of(self, cred):
        cid = getattr(cred.payload, "channel_id", None)
        rec = self.store.get(cid) if cid else None
        return (rec.payer,) if rec is not None else ()


def trusts_source_server():
    return _adapter("server-trusts-source", TrustsSource)


class BodilessPostFree(SessionServer):
    """Bug (wire variance, issue 9 item 4): decides "cost-free" by the body but still serves the content, so a paid
    POST with an empty body and `Content-Length: 0` gets its voucher accepted and the content delivered, and nothing
    is charged. Either reading of such a POST conforms (content, charged; or a voucher update, 2xx without content),
    content for free is neither (SPEC_NOTES, wire variance)."""

    _local = threading.local()

    def handle(self, method, path, headers):
        self._local.bodiless = method.upper() == "POST" and headers.get("content-length", "").strip() == "0"
        try:
            return super().handle(method, path, headers)
        finally:
            self._local.bodiless = False

    def _serve(self, tx, rec, method, path, content, cred, key, tx_hash=None):
        if getattr(self._local, "bodiless", False):
            reply = super()._serve(tx, rec, method, path, False, cred, key, tx_hash)
            return attrs.evolve(reply, body=b'{"content":true}')
        return super()._serve(tx, rec, method, path, content, cred, key, tx_hash)


def bodiless_post_free_server():
    return _adapter("server-bodiless-post-free", BodilessPostFree)


# --- rule UA (SPEC_NOTES 4b): the third party of the server machine (adversary.py THIRD_PARTY_KINDS) ---

class DisclosesProofToAnyone(SessionServer):
    """Bug (the draft's snapshot; mppx 0.11; this server's old default): the highest voucher's signature
    goes to whoever names the payer in `Payment-Payer`, so a third party can replay it (UA1)."""

    def _discloses_proof(self, rec, proven_channel):
        return True


class SettledVoucherSpends(SessionServer):
    """Bug (GHSA-mv9j-8jvg-j8mr, before mppx 0.4.11): a voucher at or below the settled amount counts as
    the payer's own: it proves the holder, buys from unspent authorization and closes the channel (UA2)."""

    @staticmethod
    def _public(amount, st):
        return False


def discloses_proof_server():
    return _adapter("server-discloses-proof-to-anyone", DisclosesProofToAnyone)


def settled_voucher_spends_server():
    return _adapter("server-settled-voucher-spends", SettledVoucherSpends)
# --- race bugs (issue 9 item 2): each needs two requests of one channel at once (conformance/concurrency.py) ---

class _NoLocks:
    """A per-channel lock table whose locks exclude nothing."""

    def get(self, channel_id):
        import contextlib

        return contextlib.nullcontext()


class _Unlocked(SessionServer):
    """The reference server without its per-channel lock (each mutant below adds the bug it makes visible)."""

    def __init__(self, config):
        super().__init__(config)
        self.store.locks = _NoLocks()


class RacyClose(_Unlocked):
    """Bug: no per-channel lock. The close computes its capture max(spent, settled) from the record it read
    when it began; a charge committed before the close transaction is then served and never captured."""


class _RequestCache:
    """The store, except that a channel's record is read once per request and that read is what the request
    writes back from (also inside its write transaction): read-modify-write on a stale copy."""

    def __init__(self, store):
        self._store = store
        self._local = threading.local()

    def __getattr__(self, name):
        return getattr(self._store, name)

    def begin_request(self):
        self._local.cache = {}

    def end_request(self):
        self._local.cache = None

    def get(self, channel_id):
        cache = getattr(self._local, "cache", None)
        if cache is None:
            return self._store.get(channel_id)
        if channel_id.lower() not in cache:
            cache[channel_id.lower()] = self._store.get(channel_id)
        return cache[channel_id.lower()]

    @contextlib.contextmanager
    def transaction(self):
        with self._store.transaction() as tx:
            yield _CachedTx(tx, self)


class _CachedTx:
    def __init__(self, tx, cache):
        self._tx, self._cache = tx, cache

    def __getattr__(self, name):
        return getattr(self._tx, name)

    def get(self, channel_id):
        got = (getattr(self._cache._local, "cache", None) or {}).get(channel_id.lower())
        return got if got is not None else self._tx.get(channel_id)


class RacyCharge(_Unlocked):
    """Bug: no per-channel lock, and the channel record is read once per request and written back from that
    copy (a per-request cache): two charges at once both charge from the same spent (a lost update), and a
    topUp racing a voucher writes the old acceptedCumulative and spent back."""

    def __init__(self, config):
        super().__init__(config)
        self.store = _RequestCache(self.store)

    def handle(self, method, path, headers):
        self.store.begin_request()
        try:
            return super().handle(method, path, headers)
        finally:
            self.store.end_request()


class _KeyCheckedOnce:
    """Inside a write transaction: the stored response is not looked up again, and storing one overwrites."""

    def __init__(self, tx):
        self._tx = tx

    def __getattr__(self, name):
        return getattr(self._tx, name)

    def get_response(self, channel_id, key):
        return None

    def put_response(self, channel_id, key, resp):
        import json

        self._tx._c.execute(
            "INSERT OR REPLACE INTO idempotency (channel_id, key, method, path, status, headers, body) "
            "VALUES (?,?,?,?,?,?,?)",
            (channel_id.lower(), key, resp.method, resp.path, resp.status,
             json.dumps([list(h) for h in resp.headers]), resp.body))


class _StoreKeyCheckedOnce:
    def __init__(self, store):
        self._store = store

    def __getattr__(self, name):
        return getattr(self._store, name)

    @contextlib.contextmanager
    def transaction(self):
        with self._store.transaction() as tx:
            yield _KeyCheckedOnce(tx)


class RacyIdempotency(_Unlocked):
    """Bug: no per-channel lock, and the Idempotency-Key is checked only before the write transaction (the
    stored response is upserted): a retry racing its original passes the check too and is charged again."""

    def __init__(self, config):
        super().__init__(config)
        self.store = _StoreKeyCheckedOnce(self.store)


def racy_close_server():
    return _adapter("server-racy-close", RacyClose)


def racy_charge_server():
    return _adapter("server-racy-charge", RacyCharge)


def racy_idempotency_server():
    return _adapter("server-racy-idempotency", RacyIdempotency)


# --- crash inside a request (conformance/crash.py, h9-time) ---------------------------------------------------


class LosesOrphan(SessionServer):
    """Bug: no adopt path. A channel opened on chain while the server crashed before committing its record stays
    unknown: every later credential naming it is answered 410 channel-not-found (the deposit is orphaned)."""

    def _adopt(self, cid, amount, signature):
        return None


class AdoptTrustsCredential(SessionServer):
    """Bug: the adopt path trusts the credential instead of the chain: it records the orphaned channel with the
    credential's voucher as accepted and as already spent (as if every request it paid for had been served),
    where the chain says only `settled` is known."""

    def _adopt(self, cid, amount, signature):
        rec = super()._adopt(cid, amount, signature)
        if rec is None or rec.accepted_cumulative >= amount:
            return rec
        rec = attrs.evolve(rec, accepted_cumulative=amount, highest_signature=signature, spent=amount)
        with self.store.transaction() as tx:
            tx.update(rec)
        return rec


def loses_orphan_server():
    return _adapter("server-loses-orphan", LosesOrphan)


def adopt_trusts_credential_server():
    return _adapter("server-adopt-trusts-credential", AdoptTrustsCredential)


# --- B1 on implementations (conformance/b1.py, h9-time) --------------------------------------------------------


class LegacyRefusesEqual(SessionServer):
    """Bug: in its legacy configuration the server wants every voucher to advance, and refuses one equal to its
    acceptedCumulative (the idempotent retry of rule V6) that the hinted configuration accepts: the two modes give
    the same credential different verdicts (B1; the seed: "legacy vouchers stay valid")."""

    def _accept(self, tx, rec, st, amount, signature):
        from adapters.reference.server import _Reject

        if not self.config.hinted and amount == rec.accepted_cumulative and amount > 0:
            raise _Reject("verification-failed", f"cumulativeAmount {amount} does not advance", channel_id=rec.channel_id)
        return super()._accept(tx, rec, st, amount, signature)


def legacy_refuses_equal_server():
    return _adapter("server-legacy-refuses-equal", LegacyRefusesEqual)


# --- stale hints (issue 9 items 7/9): the snapshot's deposit / settled from a mirror that is never refreshed ---


class _ColumnFrozenTx:
    """Inside a write transaction: an update rewrites every column but `column`, which keeps what the row held
    (the value written when the channel was first recorded)."""

    def __init__(self, tx, column):
        self._tx, self._column = tx, column

    def __getattr__(self, name):
        return getattr(self._tx, name)

    def update(self, rec):
        cur = self._tx.get(rec.channel_id)
        if cur is not None:
            rec = attrs.evolve(rec, **{self._column: getattr(cur, self._column)})
        return self._tx.update(rec)


class _ColumnFrozenStore:
    def __init__(self, store, column):
        self._store, self._column = store, column

    def __getattr__(self, name):
        return getattr(self._store, name)

    @contextlib.contextmanager
    def transaction(self):
        with self._store.transaction() as tx:
            yield _ColumnFrozenTx(tx, self._column)


class _HintsFromMirror(SessionServer):
    """The hint's `column` (deposit or settled) comes from the stored record, not from a chain read, and the
    record's mirror of that column is written once, at the open (or adopt), and never refreshed after. The
    server's decisions still read the chain (voucher checks, close capture), so only the hint and the record
    the adapter reports go stale."""

    column = ""

    def __init__(self, config):
        super().__init__(config)
        self.store = _ColumnFrozenStore(self.store, self.column)

    def _hints_for(self, rec, content):
        hints, sig = super()._hints_for(rec, content)
        if hints is not None and getattr(hints, self.column) is not None:
            hints = attrs.evolve(hints, **{self.column: getattr(rec, self.column)})
        return hints, sig


class TopUpNotMirrored(_HintsFromMirror):
    """Bug: a topUp (the payer's own on-chain transaction, or the topUp credential this server broadcast) never
    reaches the record's deposit: every later challenge hints the deposit of the open, even after vouchers above
    it were verified against the chain (SPEC_NOTES "stale hints")."""

    column = "deposit"


class SettleNotMirrored(_HintsFromMirror):
    """Bug: the server's own settle transaction never reaches the record's settled amount: the record and every
    later snapshot keep the settled amount of the open (SPEC_NOTES "stale hints": a `strict` deviation)."""

    column = "settled"


def topup_not_mirrored_server():
    return _adapter("server-topup-not-mirrored", TopUpNotMirrored)


def settle_not_mirrored_server():
    return _adapter("server-settle-not-mirrored", SettleNotMirrored)


# --- adversary teeth (issue 9 items 5/6/9): signer checks on the paths that look harmless ---------------------


class _OwnVoucherClose:
    """The deployment, except that a cooperative close goes on chain with the server's own highest voucher."""

    def __init__(self, deployment, amount: int, signature: str):
        self._deployment, self._amount, self._signature = deployment, amount, signature

    def __getattr__(self, name):
        return getattr(self._deployment, name)

    def close(self, payee_key, channel_id, cumulative_amount, capture_amount, signature):
        return self._deployment.close(payee_key, channel_id, self._amount, capture_amount,
                                      bytes.fromhex(self._signature[2:]))


class CloseNoSignerCheck(SessionServer):
    """Bug: a cooperative close is read as "the payer asks to settle up": the close voucher's amount is checked
    (X1: covers max(spent, settled), above settled, within the deposit) but not who signed it, and the escrow
    is called with the highest voucher the server already holds (which the escrow does verify), so the close
    succeeds whoever sent it: anyone can finalize a payer's channel (TP2)."""

    def __init__(self, config):
        super().__init__(config)
        self._local = threading.local()  # this thread is inside a close (the unchecked path)

    def _close(self, cred, p):
        rec = self.store.get(p.channel_id)
        if rec is None or not rec.highest_signature or rec.accepted_cumulative < rec.spent:
            return super()._close(cred, p)
        real_dep = self.deployment
        self.deployment = _OwnVoucherClose(real_dep, rec.accepted_cumulative, rec.highest_signature)
        self._local.closing = True
        try:
            return super()._close(cred, p)
        finally:
            self.deployment, self._local.closing = real_dep, False

    def _check_signer(self, st, cid, amount, signature):
        if getattr(self._local, "closing", False):
            return None  # the bug: "the escrow checks the voucher we submit"
        return super()._check_signer(st, cid, amount, signature)


class ReplaySkipsSigner(SessionServer):
    """Bug: a voucher equal to acceptedCumulative is taken for the one already held (the idempotent replay of
    rules V6 and I1), so its signature is never verified: anyone who reads acceptedCumulative (a hint) sends a
    voucher of that amount signed by any key, and is served from the payer's unspent authorization (SV, TP1)."""

    def __init__(self, config):
        super().__init__(config)
        self._local = threading.local()  # this thread's voucher equals acceptedCumulative (the unchecked path)

    def _voucher(self, method, path, content, cred, p, key):
        rec = self.store.get(p.channel_id)
        self._local.equal = rec is not None and p.cumulative_amount == rec.accepted_cumulative
        try:
            return super()._voucher(method, path, content, cred, p, key)
        finally:
            self._local.equal = False

    def _check_signer(self, st, cid, amount, signature):
        if getattr(self._local, "equal", False):
            return None  # the bug: "the same amount as the voucher we hold: nothing new to verify"
        return super()._check_signer(st, cid, amount, signature)


def close_no_signer_check_server():
    return _adapter("server-close-no-signer-check", CloseNoSignerCheck)


def replay_skips_signer_server():
    return _adapter("server-replay-skips-signer", ReplaySkipsSigner)
