"""The wire boundary: what crosses the network, as bytes and headers (the spec's records are in `model/`).

- `wire.errors`: `WireError` and its kinds, each naming where it was found and the field's JSON path;
- `wire.scalars`: the field types of "Encoding Conventions" (decimal amounts, hex, timestamps, base64url-nopad)
  and `WireModel`, the base of every wire model;
- `wire.jcs`: JCS canonical JSON (RFC 8785) for what we send, strict JSON objects for what we receive;
- `wire.schema`: the pydantic models of requests, challenges, payloads, credentials, receipts, problems;
- `wire.problems`: the problem types and their documents;
- `wire.headers`: the challenge `request`/`opaque` codecs, challenge ids and every header's codec;
- `wire.crypto`: EIP-712 voucher digests, signing and signer recovery;
- `wire.profiles`: the two hint encodings (flat `methodDetails` fields, `sessionSnapshot`) to and from
  `model.records.Hints`.

The public names of the first six are exported here (`import wire; wire.parse_receipt(value)`); `crypto` and
`profiles` are imported by name. `wire` imports `model` (the records it decodes into); `model` never imports
`wire` (tests/test_spec_purity.py).
"""
from .errors import (MalformedCredential, MalformedHeader, MalformedProblem, MalformedReceipt, MalformedRequest,
                     WHERE_AUTHORIZATION, WHERE_OPAQUE, WHERE_PROBLEM, WHERE_RECEIPT, WHERE_REQUEST, WHERE_SESSION,
                     WHERE_SNAPSHOT, WHERE_WWW_AUTHENTICATE, WireError)
from .scalars import (Address, Amount, Base64Url, Bytes32, HexData, JsonUInt, SignatureHex, Text, Timestamp,
                      WireModel, b64url_decode, b64url_encode)
from .jcs import canonical_json
from .schema import (Challenge, ClosePayload, Credential, Descriptor, HighestVoucher, MethodDetails, OpenPayload,
                     Payload, ProblemDetails, Receipt, SessionRequest, SessionSnapshot, TopUpPayload, VoucherPayload)
from .problems import PROBLEM_BASE, PROBLEMS, PROBLEMS_BY_URI, ProblemType, encode_problem, parse_problem, problem
from .headers import (challenge_id, check_credential_protocol, decode_opaque, decode_request, decode_snapshot_header,
                      encode_authorization, encode_opaque, encode_receipt, encode_request, encode_snapshot_header,
                      format_www_authenticate, parse_authorization, parse_authorization_for, parse_receipt,
                      parse_session_header, parse_www_authenticate, verify_challenge_id)
