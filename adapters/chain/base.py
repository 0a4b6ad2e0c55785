"""The one interface every chain backend implements (memory, evm, rpc).

A backend is the v1 escrow of the draft ("Contract Functions", "Legacy Contract
Reference Implementation") plus a test token. Clients open and top up channels
by *signing* transactions (`build_open_tx`, `build_topup_tx`); the server
decodes them (`decode_tx`), checks them against its challenge, and broadcasts
them (`broadcast`), as the draft's Open and TopUp verification describe.
Server-originated operations (settle, close) and payer-originated forced close
(request_close, withdraw) are direct calls signed with the caller's key.

Amounts are Python ints in token base units. Addresses are lowercase 0x-hex
strings; channel ids are lowercase 0x-hex bytes32 strings.
"""
from __future__ import annotations

from typing import Literal, Protocol, runtime_checkable

import attrs


class ChainError(Exception):
    """An on-chain call reverted or a transaction was invalid.

    `reason` is the escrow's error name where there is one (ChannelNotFound,
    ChannelFinalized, InvalidSignature, AmountExceedsDeposit, AmountNotIncreasing,
    NotPayer, NotPayee, CloseNotReady, ChannelAlreadyExists, TransferFailed) or a
    short description of what was wrong with a transaction.
    """

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


@attrs.frozen
class ChannelState:
    """The escrow's record of one channel (draft, "Contract-Backed Channel State")."""

    channel_id: str
    payer: str
    payee: str
    token: str
    authorized_signer: str  # zero address means the payer signs
    deposit: int
    settled: int
    close_requested_at: int  # 0 when no close is pending
    finalized: bool

    @property
    def exists(self) -> bool:
        return self.payer != ZERO_ADDRESS

    @property
    def expected_signer(self) -> str:
        return self.payer if self.authorized_signer == ZERO_ADDRESS else self.authorized_signer


ZERO_ADDRESS = "0x" + "00" * 20


@attrs.frozen
class DecodedTx:
    """What a signed client transaction asks the escrow to do."""

    kind: Literal["open", "topUp"]
    sender: str  # recovered from the transaction signature
    to: str  # the contract the transaction calls
    chain_id: int
    channel_id: str  # computed for open, the argument for topUp
    payee: str = ZERO_ADDRESS  # open only
    token: str = ZERO_ADDRESS  # open only
    amount: int = 0  # deposit for open, additionalDeposit for topUp
    salt: str = "0x" + "00" * 32  # open only
    authorized_signer: str = ZERO_ADDRESS  # open only


@runtime_checkable
class Chain(Protocol):
    """A v1 escrow deployment with its token, as seen by clients and servers."""

    name: str  # "memory", "evm" or "rpc"
    chain_id: int
    escrow: str  # the escrow contract address (EIP-712 verifyingContract)
    token: str  # the TIP-20 stand-in token address
    grace_period: int  # seconds between request_close and withdraw

    # -- accounts and tokens (test set-up) --
    def fund(self, key: bytes, amount: int) -> str:
        """Test set-up: mint `amount` tokens to the key's address, give it what it needs to send
        transactions (gas money on evm) and approve the escrow to pull its tokens. Returns the address."""

    def balance_of(self, address: str) -> int: ...

    # -- reads --
    def get_channel(self, channel_id: str) -> ChannelState:
        """The channel's record; a record with payer == ZERO_ADDRESS when it does not exist."""

    def compute_channel_id(self, payer: str, payee: str, token: str, salt: str, authorized_signer: str) -> str: ...

    def now(self) -> int:
        """The chain's current timestamp (seconds)."""

    # -- client-signed transactions, broadcast by the server --
    def build_open_tx(self, payer_key: bytes, payee: str, deposit: int, salt: str, authorized_signer: str) -> tuple[str, str]:
        """Sign (not send) an open transaction; returns (raw tx hex, channel id)."""

    def build_topup_tx(self, payer_key: bytes, channel_id: str, amount: int) -> str:
        """Sign (not send) a topUp transaction; returns raw tx hex."""

    def decode_tx(self, raw_tx: str) -> DecodedTx:
        """Decode and authenticate a signed client transaction; ChainError if malformed."""

    def broadcast(self, raw_tx: str) -> str:
        """Submit a signed client transaction; returns its hash; ChainError if it reverts."""

    # -- direct calls --
    def settle(self, payee_key: bytes, channel_id: str, cumulative_amount: int, signature: bytes) -> str: ...

    def close(self, payee_key: bytes, channel_id: str, cumulative_amount: int, signature: bytes, capture_amount: int | None = None) -> str:
        """Cooperative close. The v1 escrow captures `cumulative_amount`; see SPEC_NOTES on capture."""

    def request_close(self, payer_key: bytes, channel_id: str) -> str: ...

    def withdraw(self, payer_key: bytes, channel_id: str) -> str: ...

    def advance_time(self, seconds: int) -> None:
        """Move the chain clock forward (test backends only)."""


# ----------------------------------------------------------------------------- v2
# The TIP-20 channel escrow precompile (draft, "Precompile-Backed Channel State").
# The v1 records above stay as they are; v2 backends speak in descriptors.


@attrs.frozen
class ChannelDescriptor:
    """The v2 channel descriptor (draft, "Channel Descriptor"); every v2 call names a channel by it.

    All fields are lowercase 0x-hex; operator and authorized_signer are the zero
    address when unset."""

    payer: str
    payee: str
    operator: str
    token: str
    salt: str
    authorized_signer: str
    expiring_nonce_hash: str

    def as_abi(self) -> tuple[str, str, str, str, str, str, str]:
        """The descriptor as the precompile's ABI tuple, in its field order."""
        return (self.payer, self.payee, self.operator, self.token, self.salt, self.authorized_signer, self.expiring_nonce_hash)

    @property
    def expected_signer(self) -> str:
        return self.payer if self.authorized_signer == ZERO_ADDRESS else self.authorized_signer


@attrs.frozen
class ChannelStateV2(ChannelState):
    """The precompile's record of one channel: the v1 fields plus what v2 adds to the descriptor."""

    operator: str = ZERO_ADDRESS
    salt: str = "0x" + "00" * 32
    expiring_nonce_hash: str = "0x" + "00" * 32

    @property
    def descriptor(self) -> ChannelDescriptor:
        return ChannelDescriptor(
            self.payer, self.payee, self.operator, self.token, self.salt, self.authorized_signer, self.expiring_nonce_hash
        )


@attrs.frozen
class DecodedTxV2:
    """What a signed client transaction asks the v2 escrow to do."""

    kind: Literal["open", "topUp"]
    sender: str  # recovered from the transaction signature
    to: str  # the contract the transaction calls
    chain_id: int
    channel_id: str  # computed from the descriptor
    descriptor: ChannelDescriptor  # for open: the one the transaction will create
    amount: int  # deposit for open, additionalDeposit for topUp


@runtime_checkable
class ChainV2(Protocol):
    """A v2 (TIP-20 channel escrow precompile) deployment with its token.

    Same shape as Chain, except that channels are named by their descriptor in
    every write, amounts are uint96, an open may name an operator (who may
    settle and close for the payee), and close always takes the capture amount."""

    name: str  # "memory-v2" or "evm-v2"
    chain_id: int
    escrow: str
    token: str
    grace_period: int

    def fund(self, key: bytes, amount: int) -> str: ...

    def balance_of(self, address: str) -> int: ...

    def get_channel(self, channel_id: str) -> ChannelStateV2: ...

    def compute_channel_id(self, descriptor: ChannelDescriptor) -> str: ...

    def now(self) -> int: ...

    def build_open_tx(
        self, payer_key: bytes, payee: str, deposit: int, salt: str, authorized_signer: str, operator: str = ZERO_ADDRESS
    ) -> tuple[str, ChannelDescriptor]:
        """Sign (not send) an open transaction; returns (raw tx hex, the descriptor it will create)."""

    def build_topup_tx(self, payer_key: bytes, descriptor: ChannelDescriptor, amount: int) -> str: ...

    def decode_tx(self, raw_tx: str) -> DecodedTxV2: ...

    def broadcast(self, raw_tx: str) -> str: ...

    def settle(self, payee_key: bytes, descriptor: ChannelDescriptor, cumulative_amount: int, signature: bytes) -> str: ...

    def close(
        self, payee_key: bytes, descriptor: ChannelDescriptor, cumulative_amount: int, capture_amount: int, signature: bytes
    ) -> str: ...

    def request_close(self, payer_key: bytes, descriptor: ChannelDescriptor) -> str: ...

    def withdraw(self, payer_key: bytes, descriptor: ChannelDescriptor) -> str: ...

    def advance_time(self, seconds: int) -> None: ...
