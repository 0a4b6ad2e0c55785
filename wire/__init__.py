"""The wire boundary: what crosses the network, as bytes and headers (the spec's records are in `model/`).

- `wire.codec`: the pydantic schema of the headers and payloads, scalars, problem types, header codecs, JCS;
- `wire.crypto`: EIP-712 voucher digests, signing and signer recovery;
- `wire.profiles`: the two hint encodings (v1 flat `methodDetails`, v2 `sessionSnapshot`) to and from `model.records.Hints`.

`wire` imports `model` (the records it decodes into); `model` never imports `wire` (tests/test_spec_purity.py).
"""
