"""Finding F19 (FINDINGS.md): a third party against mppx@0.11.0's session server (rule UA, SPEC_NOTES 4b).

The third party holds no payer key. It sends what anyone can: an unpaid request naming the channel
(the `Payment-Session` header mppx's sessionManager sends; a channelId is public on chain), reads the
402's `sessionSnapshot`, and replays the voucher it finds there, with the payer's DID as `source` (the
payer's address is in the snapshot's public descriptor). Everything goes through the adapter's
`server.handle`, i.e. the route handler of `Mppx.create({methods: [tempo.session(...)]})`.

The seeded channel (tests/test_mppx_session.py Session): highest voucher 250000, spent 240000, deposit
1000000, price 10000: one price of unspent authorization, as after a pre-paid or interrupted request.
The first test is a plain reproduction (it passes while mppx shows the finding); the xfail(strict)
tests assert rule UA and fail on mppx 0.11.0.
"""
from __future__ import annotations

import pytest

from .test_mppx_session import Session, adapter  # noqa: F401  (the module-scoped adapter fixture)

UA = "FINDING F19 (rule UA; draft 'Cross-Session Replay Prevention', 'Session Snapshot'): "


def _third_party(a, s: Session, method: str, action: str):
    """The third party's credential: only what the 402 any requester gets shows."""
    ch = a.call("server.challenge", method=method, path="/resource", channelId=s.channel_id)
    challenge = ch["challenges"][0]
    snap = challenge["request"]["methodDetails"]["sessionSnapshot"]
    hv = snap.get("highestVoucher")
    if hv is None:
        return None, snap
    cred = {"challenge": challenge, "source": f"did:pkh:eip155:{snap['chainId']}:{snap['descriptor']['payer']}",
            "payload": {"action": action, "channelId": hv["channelId"], "cumulativeAmount": hv["cumulativeAmount"],
                        "signature": hv["signature"], "descriptor": snap["descriptor"]}}
    return a.call("credential.format", credential=cred)["header"], snap


def _send(a, s: Session, method: str, header: str):
    return a.call("server.handle", method=method, path="/resource", authorization=header, channelId=s.channel_id)


def test_reproduction_through_the_route_handler(adapter):  # noqa: F811
    """The trace of FINDINGS F19, step by step (passes while mppx 0.11.0 shows the finding)."""
    s = Session(adapter)
    header, snap = _third_party(adapter, s, "GET", "voucher")
    assert header is not None and snap["highestVoucher"]["cumulativeAmount"] == "250000"
    served = _send(adapter, s, "GET", header)
    assert served["status"] == 200 and s.record()["spent"] == "250000"  # served on the payer's money
    s = Session(adapter)
    header, _ = _third_party(adapter, s, "HEAD", "close")
    closed = _send(adapter, s, "HEAD", header)
    rec = s.record()
    assert 200 <= closed["status"] < 300 and rec["finalized"] and rec["settled"] == "240000"  # the channel is gone


@pytest.mark.xfail(strict=True, reason=UA + "the 402 any requester gets carries the highest voucher's signature")
def test_snapshot_for_anyone_carries_no_voucher_signature(adapter):  # noqa: F811
    s = Session(adapter)
    header, _ = _third_party(adapter, s, "GET", "voucher")
    assert header is None


@pytest.mark.xfail(strict=True, reason=UA + "an equal-voucher replay by someone who is not the payer is served "
                                           "from unspent authorization")
def test_third_party_is_not_served_on_unspent_authorization(adapter):  # noqa: F811
    s = Session(adapter)
    header, _ = _third_party(adapter, s, "GET", "voucher")
    resp = _send(adapter, s, "GET", header)
    assert resp["status"] == 402 and s.record()["spent"] == "240000"


@pytest.mark.xfail(strict=True, reason=UA + "a close with the disclosed voucher finalizes the payer's channel")
def test_third_party_cannot_close_the_channel(adapter):  # noqa: F811
    s = Session(adapter)
    header, _ = _third_party(adapter, s, "HEAD", "close")
    resp = _send(adapter, s, "HEAD", header)
    assert resp["status"] == 402 and not s.record()["finalized"]
