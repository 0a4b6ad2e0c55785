"""mppx@0.11.0 behind the conformance Protocols, over the JSON-lines bridge (adapters/mppx).

`MppxServer` is a `ServerUnderTest`: mppx's `tempo.session` server (`Mppx.create(...)` route handlers) with its
in-memory store, on the harness's chain. `MppxClient` is a `ClientUnderTest`: mppx's client as applications
run it, `Mppx.create({methods: [sessionMethod(...)]}).fetch`, one `client.fetch` per logical request whose HTTP
requests come back as http callbacks through the harness transport (PROTOCOL.md section 8).

On a v2 harness chain (Env.chain a memory-v2/evm-v2 backend) both classes answer mppx's JSON-RPC from that chain
(`rpc_for(env)`, conformance/chain_rpc.py, one handler per session shared by server and clients): mppx opens, tops
up and its server broadcasts there; nothing is seeded, and `settle` is the payee's settle of the stored highest
voucher on that chain. The generic machines drive mppx x mppx that way (runner.run_pair on `--chain memory-v2`).

The runs happen only on a harness chain the release speaks (conformance/runner.py `bridge_gap`: memory-v2 for
v2 releases, the memory v1 escrow for v1-only releases); off one the adapter's fake chain answers (unit tests only).

* `restart` re-creates mppx's server on the same store (`server.restart`, Store.memory() standing for the
  durable database); an adapter without it has its restart_server steps skipped ("op server.restart").
* mppx's client keeps no view of the server (it reads no receipts): `view()` reports only its channel and
  local cumulative (`signed_max`); accepted/spent are 0 and properties about the view (R1, RM) are SKIPPED
  (`sees_receipts = False`, harness.Session.blind).

The adapter process is started once per Python process and manifest and shared (`get_adapter(manifest)`). Any
adapter that speaks adapters/bridge/PROTOCOL.md runs through the same classes (`MppxServer("bridge:PATH")`,
`MppxClient("bridge:PATH")`; conformance/bridge_spec.py). When Node (or the adapter's command) is missing,
`unavailable()` says why, and every pair of that adapter is reported SKIPPED, never passed.
"""
from __future__ import annotations

import base64
import binascii
import json
import shutil
import subprocess
import threading
from pathlib import Path
from typing import Any, Callable, Optional

import httpx

from adapters.bridge import AdapterError, AdapterProcess, CallbackRefused
from adapters.bridge.process import build_adapter, load_manifest
from adapters.chain._common import PRECOMPILE_ESCROW
from wire.crypto import CryptoError, VoucherDomain, address_of, recover_voucher_signer

from .bridge_spec import effective_capabilities, is_bridge, manifest_path
from .interface import (BASE_URL, IDEMPOTENCY_HEADER, PAYER_HEADER, AccountingRecord, ClientParams, ClientView, Env,
                        Outcome)

REPO = Path(__file__).resolve().parents[1]
MANIFEST = REPO / "adapters" / "mppx" / "manifest.json"
SESSION_HEADER = "Payment-Session"  # the client's reusable channel (mppx's sessionManager convention)
CHAIN_ID = 4217
ESCROW = "0x9d136eea063ede5418a6bc7beaff009bbb6cfa70"
TOKEN = "0x20c0000000000000000000000000000000000000"
MIN_NODE = 20

_lock = threading.Lock()
_adapters: dict = {}  # resolved manifest path -> AdapterProcess (one process per manifest)
_unavailable: dict = {}  # resolved manifest path -> why it cannot run here
_capabilities: dict = {}  # resolved manifest path -> the ops its hello (and manifest) list


class MppxUnavailable(RuntimeError):
    """Node/npm (or the adapter's command/build tool) missing, or the install cannot run: the pairs of that
    adapter are SKIPPED with this reason."""


def _node_major() -> Optional[int]:
    node = shutil.which("node")
    if node is None:
        return None
    try:
        out = subprocess.run([node, "--version"], capture_output=True, text=True, timeout=30).stdout.strip()
        return int(out.lstrip("v").split(".")[0])
    except (OSError, subprocess.SubprocessError, ValueError):
        return None


def _why_not(manifest) -> Optional[str]:
    """None when the adapter of `manifest` can be built and started here, else why not (a SKIPPED reason)."""
    exe = manifest.command[0]
    if Path(exe).name == "node" and "/" not in exe:
        major = _node_major()
        if major is None:
            return (f"node is not on PATH: the {manifest.name} adapter needs Node >= {MIN_NODE}"
                    + (" (and npm for `make mppx`)" if manifest.name == "mppx" else ""))
        if major < MIN_NODE:
            return f"node v{major} is too old: the {manifest.name} adapter needs Node >= {MIN_NODE}"
    elif shutil.which(exe) is None and not Path(exe).exists():
        return f"{exe!r} is not on PATH: cannot start the {manifest.name} adapter ({manifest.root})"
    if manifest.build and not manifest.is_built:
        tool = manifest.build[0]
        if shutil.which(tool) is None and not Path(tool).exists():
            if manifest.name == "mppx" and tool == "npm":
                return "npm is not on PATH: cannot install mppx@0.11.0 (run `make mppx` where npm exists)"
            return f"{tool!r} is not on PATH: cannot build the {manifest.name} adapter ({' '.join(manifest.build)})"
        try:
            build_adapter(manifest)
        except (RuntimeError, OSError, subprocess.SubprocessError) as exc:
            what = "npm ci" if manifest.name == "mppx" else " ".join(manifest.build)
            return f"cannot install the {manifest.name} adapter ({what}): {exc}"
    return None


def get_adapter(manifest_path: Any = None) -> AdapterProcess:
    """The shared adapter process of a manifest (default: mppx's), built on first use (its `build`, e.g. npm ci),
    or MppxUnavailable. One process per resolved manifest path."""
    path = Path(manifest_path if manifest_path is not None else MANIFEST).resolve()
    with _lock:
        if path in _adapters:
            return _adapters[path]
        if path in _unavailable:
            raise MppxUnavailable(_unavailable[path])
        manifest = load_manifest(path)
        reason = _why_not(manifest)
        if reason is not None:
            _unavailable[path] = reason
            raise MppxUnavailable(reason)
        adapter = AdapterProcess(manifest)
        hello = adapter.start()  # a built adapter that does not start is an error, not a skip
        _capabilities[path] = effective_capabilities(manifest, hello)
        _adapters[path] = adapter
        return adapter


def capabilities(manifest_path: Any = None) -> frozenset:
    """The ops the adapter of a manifest answers (its hello capabilities; starts it if needed)."""
    path = Path(manifest_path if manifest_path is not None else MANIFEST).resolve()
    adapter = get_adapter(path)
    if path not in _capabilities:  # get_adapter replaced by a test double
        _capabilities[path] = effective_capabilities(adapter.manifest, adapter.hello)
    return _capabilities[path]


def unavailable(manifest_path: Any = None) -> Optional[str]:
    """None when the adapter runs here, else why not."""
    try:
        get_adapter(manifest_path)
    except MppxUnavailable as exc:
        return str(exc)
    return None


_RPCS: dict = {}  # id(chain) -> (env, HarnessRpc): one per session, shared by its server and clients


def is_v2_chain_name(name: str) -> bool:
    """Whether a chain backend name is a v2 (precompile) deployment, the one mppx 0.7+ speaks."""
    from adapters.chain.deployment import PROTOCOL_OF_BACKEND

    return PROTOCOL_OF_BACKEND.get(name, "v1") == "v2"


def is_v2_chain(chain: Any) -> bool:
    return chain is not None and is_v2_chain_name(getattr(chain, "name", ""))


def sessions_of(manifest: Any = None) -> tuple:
    """The session protocols the adapter's release speaks (its hello `sessions`; v2 when it does not say)."""
    path = Path(manifest if manifest is not None else MANIFEST).resolve()
    adapter = get_adapter(path)
    return tuple((adapter.hello or {}).get("sessions") or ("v2",))


def on_harness_chain(manifest: Any, chain: Any) -> bool:
    """Whether the adapter runs on the harness's chain (rpc callback): a v2 backend for a v2 release, or a v1
    backend for a v1-only release (mppx <= 0.6.x, whose escrow interface is our v1 escrow's)."""
    if chain is None:
        return False
    proto = "v2" if is_v2_chain(chain) else "v1"
    return proto in sessions_of(manifest) and (proto == "v2" or hasattr(chain, "apply_foreign"))


def rpc_for(env: Env, manifest: Any = None):
    """The session's HarnessRpc (conformance/chain_rpc.py) over env.chain: mppx's client and server of one
    session answer their JSON-RPC from it, so what one broadcasts the other reads."""
    from .chain_rpc import HarnessRpc

    held = _RPCS.get(id(env.chain))
    if held is None or held[0] is not env:
        held = _RPCS[id(env.chain)] = (env, HarnessRpc(env.chain, (env.payee_key,)))
    if manifest is not None:  # the v1 getChannel struct order this release's ABI decodes (FINDINGS.md F18)
        fields = (get_adapter(Path(manifest).resolve()).hello or {}).get("v1ChannelFields")
        if isinstance(fields, list) and sorted(fields) == sorted(HarnessRpc.DEPLOYED_V1_FIELDS):
            held[1].v1_fields = tuple(fields)
    return held[1]


class _Offer:
    """Offer the rpc callback (the harness's chain) around one adapter call, restoring what was there (a nested
    call inside a client's http callback must not take the client's registration away)."""

    def __init__(self, adapter: AdapterProcess, rpc: Any):
        self.a, self.rpc = adapter, rpc

    def __enter__(self):
        self.old = self.a.callbacks.get("rpc")
        if self.rpc is not None:
            self.a.callbacks["rpc"] = self.rpc
        return self

    def __exit__(self, *exc):
        if self.old is None:
            self.a.callbacks.pop("rpc", None)
        else:
            self.a.callbacks["rpc"] = self.old


def problem_of(raw: dict) -> Optional[str]:
    body = raw.get("body")
    if isinstance(body, dict) and isinstance(body.get("type"), str):
        return body["type"].rsplit("/", 1)[-1]
    return None


# ---------------------------------------------------------------------------------------------- server


class MppxServer:
    """mppx's session server (v2) as a ServerUnderTest. `last` is the adapter's decoded last response."""

    hinted = True
    hint_encoding = "snapshot"  # mppx's challenges carry a sessionSnapshot
    concurrent = False  # one JSON-lines pipe, one request at a time: the concurrency rules are SKIPPED (LZ)
    # resolveChannelId's fallback to the channel the payer (Payment-Payer) last opened here: set by the harness
    # when the clients are its own (they name the payer, never a Payment-Session); mppx's client names its channel
    resolve_by_payer = False

    def __init__(self, name: str = "mppx"):
        self.name = name  # the spec: "mppx" or "bridge:PATH/manifest.json" (any adapter of PROTOCOL.md)
        self.manifest = manifest_path(name) if is_bridge(name) else MANIFEST
        self.a: Optional[AdapterProcess] = None
        self.last: Optional[dict] = None
        self.config: dict = {}

    # -- Protocol

    def reset(self, env: Env) -> None:
        self.a = get_adapter(self.manifest)
        self.a.call("reset")
        self.env = env
        self.channels: dict = {}  # payer -> the channel it last opened here (resolveChannelId's fallback)
        # On a v2 harness chain (memory-v2, evm-v2) mppx's server reads and writes that chain over the rpc
        # callback; otherwise the adapter's fake chain answers it (the dedicated machines seed it).
        self.rpc = rpc_for(env, self.manifest) if on_harness_chain(self.manifest, env.chain) else None
        chain_id, escrow, token = ((env.chain.chain_id, env.chain.escrow, env.chain.token) if self.rpc is not None
                                   else (CHAIN_ID, ESCROW, TOKEN))
        self.config = self.a.call(
            "server.configure", amount=str(env.price), payeePrivateKey="0x" + env.payee_key.hex(),
            secretKey=f"conformance-mppx-secret-{env.seed:08d}-0123456789abcdef", chainId=chain_id,
            escrowContract=escrow, currency=token,
            **({"suggestedDeposit": str(env.suggested_deposit)} if env.suggested_deposit and self.rpc else {}))
        self.payee = self.config["recipient"].lower()
        self.can_restart = "server.restart" in capabilities(self.manifest)
        self.settle_path: Optional[str] = None  # which settle ran last: "implementation" (server.settle) or "harness"
        self.last_settle: Optional[dict] = None  # the adapter's answer to server.settle

    def handle(self, request: httpx.Request) -> httpx.Response:
        method = request.method.upper()
        fields: dict = {"method": method, "path": "/resource"}
        payer = (request.headers.get(PAYER_HEADER) or "").lower()
        # the channel mppx's resolveChannelId hints: the one the client names (Payment-Session, mppx's
        # sessionManager), else the one this payer last opened here (the application resolving its user's
        # channel, as the harness's own servers resolve a payer's)
        cid = request.headers.get(SESSION_HEADER) or (self.channels.get(payer) if self.resolve_by_payer else None)
        if cid:
            fields["channelId"] = cid
        key = request.headers.get(IDEMPOTENCY_HEADER)
        if key:
            fields["idempotencyKey"] = key
        body = request.content.decode() if request.content else None
        if body and method not in ("GET", "HEAD"):
            fields["body"] = body
            fields["headers"] = {"content-type": request.headers.get("content-type", "application/json")}
        auth = request.headers.get("authorization")
        with _Offer(self.a, self.rpc):
            if auth:
                raw = self.a.call("server.handle", authorization=auth, **fields)
            else:
                raw = self.a.call("server.challenge", **fields)
        self.last = raw
        if payer and auth and 200 <= int(raw.get("status", 0)) < 300:
            opened = decode_credential_header(auth)
            p = (opened or {}).get("payload") or {}
            if p.get("action") == "open" and p.get("channelId"):
                self.channels[payer] = str(p["channelId"]).lower()
        return to_httpx(raw)

    def record(self, channel_id: str) -> Optional[AccountingRecord]:
        r = self.raw_record(channel_id)
        if r is None:
            return None
        hv = r.get("highestVoucher") or {}
        return AccountingRecord(r["channelId"], int(r["acceptedCumulative"]), int(r["spent"]), int(r["deposit"]),
                             int(r["settled"]), bool(r["finalized"]), (r.get("payer") or "").lower(),
                             hv.get("signature"))

    def settle(self, channel_id: str) -> None:
        """The payee's settle of the stored highest voucher on the harness's chain, through the implementation's
        own settle (`server.settle`: mppx's `tempo.settle(store, client, channelId)`, which sends the transaction
        through the rpc callback and records what it settled). A release without it is settled by the harness
        with the payee's key from the stored voucher (`settle_path` says which ran). A no-op when the settle is
        refused (nothing stored, a stored high-s voucher the escrow reverts), and off a harness chain, where
        nothing runs (runner.bridge_gap)."""
        from adapters.chain.base import ChainError

        r = self.raw_record(channel_id)
        hv = (r or {}).get("highestVoucher")
        if self.rpc is None or r is None or not hv:
            return
        st = self.env.chain.get_channel(channel_id)
        if not st.exists or st.finalized:
            return
        if "server.settle" in capabilities(self.manifest):
            self.settle_path = "implementation"
            with _Offer(self.a, self.rpc):
                self.last_settle = self.a.call("server.settle", channelId=channel_id)
            return
        self.settle_path = "harness"
        ref = st.descriptor if is_v2_chain(self.env.chain) else channel_id  # v2 names a channel by descriptor
        try:
            self.env.chain.settle(self.env.payee_key, ref, int(hv["cumulativeAmount"]), bytes.fromhex(hv["signature"][2:]))
        except ChainError:
            pass

    def restart(self) -> None:
        with _Offer(self.a, self.rpc):
            self.a.call("server.restart")

    def raw_record(self, channel_id: str) -> Optional[dict]:
        return self.a.call("server.record", channelId=channel_id)

    def close_resources(self) -> None:
        pass  # the adapter process is shared by every session of this Python process


def to_httpx(raw: dict) -> httpx.Response:
    headers = dict(raw.get("headers") or {})
    headers.pop("content-length", None)
    body = raw.get("body")
    if body is None:
        content = b""
    elif isinstance(body, (dict, list)):
        content = json.dumps(body).encode()
    else:
        content = str(body).encode()
    return httpx.Response(int(raw["status"]), headers=headers, content=content)


# ---------------------------------------------------------------------------------------------- client


class MppxClient:
    """mppx's client as a ClientUnderTest, driven the way applications run it.

    One logical request is one `client.fetch`: `Mppx.create({methods: [sessionMethod(...)]}).fetch(...)` inside
    the adapter, whose every HTTP request comes back here as an http callback and goes through the harness's
    transport (its network, faults and the server under test), so mppx's own retries, automatic top-up,
    credential reuse and open acknowledgement run. Its chain is the harness's (`rpc`, a JSON-RPC handler: the
    rpc callback) when one is set, else the adapter's fake chain answering from `chain_view` (set by a machine).
    An adapter without `client.fetch` is driven through the low-level `client.next_credential` loop instead.
    `log` records every credential mppx sent: (action, channelId, cumulativeAmount, echoed challenge).
    """

    concurrent = False  # one JSON-lines pipe: two devices at once are not driven (the concurrency rules are SKIPPED)

    hinted = True
    persists = True  # False for releases without a channel store option (harness restarts it as a fresh install)
    sees_receipts = False  # mppx's sessionMethod reads no receipts: R1/RM are SKIPPED (harness.Session.blind)
    MAX_ROUND_TRIPS = 4  # only for the next_credential loop; mppx's fetch decides its own retries

    def __init__(self, name: str = "mppx"):
        self.name = name  # the spec: "mppx" or "bridge:PATH/manifest.json"
        self.manifest = manifest_path(name) if is_bridge(name) else MANIFEST
        self.chain_view: Optional[Callable[[], dict]] = None
        self.rpc: Optional[Callable[[dict], Any]] = None  # {method, params} -> JSON-RPC result, or None
        self.log: list = []
        self.chain_sources: set = set()  # what answered mppx's chain reads: harness-rpc / adapter-fake-chain

    def reset(self, env: Env, params: ClientParams, transport: httpx.BaseTransport) -> None:
        self.a = get_adapter(self.manifest)
        self.env, self.params = env, params
        self.key_hex = "0x" + params.key.hex()
        self.addr = address_of(params.key)
        self.http = httpx.Client(transport=transport, base_url=BASE_URL)
        self.store: list = []
        self.persisted: list = []
        self.log = []
        self.fresh = True  # the next client.fetch starts mppx's client with `self.store`
        self.uses_fetch = "client.fetch" in capabilities(self.manifest)
        if on_harness_chain(self.manifest, env.chain):  # mppx's chain is the harness's: it opens, tops up there
            self.rpc = rpc_for(env, self.manifest)
            self.rpc.add_key(params.key)

    def close_resources(self) -> None:
        self.http.close()

    def restart(self, keep_persisted: bool) -> None:
        # mppx's default channelStore is in memory; `persist` stands for an application that saves it.
        self.store = list(self.persisted) if (keep_persisted and self.params.persist and self.persists) else []
        self.fresh = True

    def view(self) -> ClientView:
        if not self.store:
            return ClientView(None)
        e = self.store[-1]
        return ClientView(e["channelId"].lower(), 0, 0, int(e["cumulativeAmount"]))

    def _headers(self) -> dict:
        h = {PAYER_HEADER: self.addr}
        if self.store:
            h[SESSION_HEADER] = self.store[-1]["channelId"].lower()
        return h

    def request(self, method: str, path: str, idempotency_key: Optional[str] = None) -> Outcome:
        try:
            if self.uses_fetch:
                return self._fetch(method, path, idempotency_key)
            return self._request(method, path, idempotency_key)
        except httpx.TransportError:
            return Outcome("unknown")

    # -- mppx's fetch (the application entry point)

    def _carry(self, request: dict) -> dict:
        """The http callback: one request mppx makes, sent through the harness transport."""
        url = httpx.URL(str(request.get("url") or ""))
        target = url.raw_path.decode() or "/"
        headers = {str(k): str(v) for k, v in (request.get("headers") or {}).items()}
        auth = headers.get("authorization")
        if auth:
            self._log_credential(auth)
        body = request.get("body")
        try:
            resp = self.http.request(str(request.get("method") or "GET"), target, headers=headers,
                                     content=body.encode() if isinstance(body, str) else None)
        except httpx.TransportError as exc:
            self._last = None
            raise CallbackRefused(f"{type(exc).__name__}: {exc}", type="network") from exc
        self._last = resp
        return {"status": resp.status_code, "headers": dict(resp.headers), "body": resp.text}

    def _log_credential(self, auth: str) -> None:
        cred = decode_credential_header(auth)
        if cred is None:
            return
        p = cred.get("payload") or {}
        self.log.append((p.get("action"), (p.get("channelId") or "").lower(),
                         int(p["cumulativeAmount"]) if p.get("cumulativeAmount") is not None else None,
                         cred.get("challenge")))

    def _fetch(self, method: str, path: str, key: Optional[str]) -> Outcome:
        headers = self._headers()
        if key:
            headers[IDEMPOTENCY_HEADER] = key
        fields: dict = {"privateKey": self.key_hex, "method": method, "url": str(httpx.URL(BASE_URL).join(path)),
                        "headers": headers, "instance": f"{self.params.name}:{self.addr}"}
        if self.fresh:
            fields["store"] = self.store
            self.fresh = False
            if self.rpc is not None:
                # the payer's wallet bounds what mppx may authorize in total; it tops up by the harness's top_up
                fields["maxDeposit"] = str(max(self.env.chain.balance_of(self.addr), self.params.deposit))
                fields["topUpAmount"] = str(self.params.top_up)
            if self.rpc is not None and str(getattr(self.env.chain, "escrow", "")).lower() == PRECOMPILE_ESCROW:
                # on the harness's chain the escrow is mppx's default: run with its default (no custom escrows),
                # as its users do, so a challenge naming another escrow is refused by mppx itself (rule H7, DM)
                fields["allowCustomEscrow"] = False
        if self.chain_view is not None and self.rpc is None:
            fields["chain"] = self.chain_view()
        self._last = None
        self.a.callbacks["http"] = self._carry
        try:
            with _Offer(self.a, self.rpc):
                out = self.a.call("client.fetch", **fields)
        finally:
            self.a.callbacks.pop("http", None)
        self.store = out["store"]
        self.chain_sources.add(out.get("chainSource"))
        if out.get("persists") is False:  # mppx <= 0.6.x: no channel store option, a restart is a fresh install
            self.persists = False
        if self.params.persist:
            self.persisted = list(self.store)
        return fetch_outcome(out, self._last)

    # -- the low-level path (sessionMethod(...).createCredential per challenge), for adapters without fetch

    def _request(self, method: str, path: str, key: Optional[str]) -> Outcome:
        resp = self.http.request(method, path, headers=self._headers())
        www = resp.headers.get("www-authenticate")
        trips = 1
        while True:
            if resp.status_code != 402 or not www:
                return Outcome(f"failed:no-challenge", resp.status_code)
            if trips >= self.MAX_ROUND_TRIPS:
                return Outcome("failed:gave-up", resp.status_code)
            fields: dict = {"privateKey": self.key_hex, "challenge": www, "store": self.store}
            if self.chain_view is not None:
                fields["chain"] = self.chain_view()
            try:
                out = self.a.call("client.next_credential", **fields)
            except AdapterError as exc:
                if exc.type != "rejected":
                    raise
                return Outcome("refused:" + _reason(exc.message))
            self.store = out["store"]
            if self.params.persist:
                self.persisted = list(self.store)
            self._log_credential(out["authorization"])
            p = out["credential"]["payload"]
            headers = self._headers()
            headers["Authorization"] = out["authorization"]
            if key and p.get("action") in ("open", "voucher"):
                headers[IDEMPOTENCY_HEADER] = key
            resp = self.http.request(method, path, headers=headers)
            trips += 1
            if 200 <= resp.status_code < 300:
                return Outcome("served", resp.status_code)
            www = resp.headers.get("www-authenticate")
            if resp.status_code != 402 or not www:
                return Outcome(f"failed:{_problem(resp)}", resp.status_code)


def _b64url_json(token: str) -> Optional[dict]:
    try:
        obj = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
    except (ValueError, binascii.Error):
        return None
    return obj if isinstance(obj, dict) else None


def decode_credential_header(value: str) -> Optional[dict]:
    """An `Authorization: Payment <base64url JSON>` value as JSON, its challenge's `request` decoded too (the
    shape of `credential.parse`); None when it is not one. Decoded here, not by the adapter, because the adapter
    is busy with the op whose http callback carries it."""
    scheme, _, token = value.strip().partition(" ")
    if scheme.lower() != "payment":
        return None
    cred = _b64url_json(token.strip())
    if cred is None:
        return None
    challenge = cred.get("challenge")
    if isinstance(challenge, dict) and isinstance(challenge.get("request"), str):
        request = _b64url_json(challenge["request"])
        if request is not None:
            cred = dict(cred, challenge=dict(challenge, request=request))
    return cred


def fetch_outcome(out: dict, last: Optional[httpx.Response]) -> Outcome:
    """The Outcome of one `client.fetch`: served (2xx), failed:<problem> (the server's last word), refused:<why>
    (mppx threw before sending, e.g. it declined to sign), unknown (the network lost a request)."""
    thrown = out.get("thrown")
    if thrown is None:
        raw = out["response"]
        status = int(raw["status"])
        if 200 <= status < 300:
            return Outcome("served", status)
        return Outcome(f"failed:{problem_of(raw) or f'http-{status}'}", status)
    if thrown.get("network"):
        return Outcome("unknown")
    if last is not None and not (last.status_code == 402 and _problem(last) in ("payment-required", "http-402")):
        # mppx gave up after the server refused (e.g. its top-up POST was answered with a problem)
        return Outcome(f"failed:{_problem(last)}", last.status_code)
    return Outcome("refused:" + _reason(str(thrown.get("message", ""))))


def _reason(message: str) -> str:
    m = message.lower()
    if "deposit" in m:
        return "deposit-exhausted"
    if "pending close" in m or "closing" in m:
        return "channel-closing"
    return "mppx-rejected"


def _problem(resp: httpx.Response) -> str:
    try:
        t = json.loads(resp.content or b"{}").get("type", "")
        return t.rsplit("/", 1)[-1] or f"http-{resp.status_code}"
    except ValueError:
        return f"http-{resp.status_code}"
