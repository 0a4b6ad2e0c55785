// SPDX-License-Identifier: MIT
pragma solidity 0.8.26;

/// @title TempoStreamChannel (test escrow of the conformance suite)
/// @notice An escrow for unidirectional payment channels implementing the v1
/// interface of draft-tempo-session-00 ("Contract Functions", "Access Control",
/// "Signature Verification", "Legacy Contract Reference Implementation").
/// Written for this project's chain backends; the in-process backend
/// (adapters/chain/memory.py) mirrors it rule for rule and check for check, in
/// the same order, so both raise the same error for the same call. The order
/// of the checks and the two choices the draft leaves open (a second
/// requestClose reverts with CloseAlreadyRequested; a zero deposit or top-up
/// reverts with TransferFailed) follow the project's abstract model
/// (model/chain.py).
///
/// Beyond the draft's v1 interface it has one extra function: a four-argument
/// `close` that captures less than the close voucher authorizes (see there).
/// It leaves out CLOSE_REQUEST_TYPEHASH and getCloseRequestDigest: the draft
/// lists them but does not say what they sign, and requestClose takes no
/// signature.
contract TempoStreamChannel {
    struct Channel {
        address payer;
        address payee;
        address token;
        address authorizedSigner;
        uint128 deposit;
        uint128 settled;
        uint64 closeRequestedAt;
        bool finalized;
    }

    /// @notice Time between requestClose and the earliest withdraw.
    uint64 public constant CLOSE_GRACE_PERIOD = 15 minutes;

    bytes32 public constant VOUCHER_TYPEHASH =
        keccak256("Voucher(bytes32 channelId,uint128 cumulativeAmount)");

    bytes32 private constant DOMAIN_TYPEHASH =
        keccak256("EIP712Domain(string name,string version,uint256 chainId,address verifyingContract)");
    bytes32 private constant NAME_HASH = keccak256("Tempo Stream Channel");
    bytes32 private constant VERSION_HASH = keccak256("1");

    /// @dev secp256k1 order / 2; signatures with a larger s are rejected.
    uint256 private constant HALF_ORDER = 0x7FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF5D576E7357A4501DDFE92F46681B20A0;

    mapping(bytes32 => Channel) private _channels;

    event ChannelOpened(
        bytes32 indexed channelId,
        address indexed payer,
        address indexed payee,
        address token,
        address authorizedSigner,
        uint256 deposit
    );
    event Settled(
        bytes32 indexed channelId,
        address indexed payer,
        address indexed payee,
        uint256 cumulativeAmount,
        uint256 deltaPaid,
        uint256 newSettled
    );
    event CloseRequested(bytes32 indexed channelId, address indexed payer, address indexed payee, uint256 closeGraceEnd);
    event CloseRequestCancelled(bytes32 indexed channelId, address indexed payer, address indexed payee);
    event TopUp(
        bytes32 indexed channelId,
        address indexed payer,
        address indexed payee,
        uint256 additionalDeposit,
        uint256 newDeposit
    );
    /// @dev settledToPayee is the channel's final settled total (all the payee
    /// ever received from it); settledToPayee + refundedToPayer == deposit.
    event ChannelClosed(
        bytes32 indexed channelId,
        address indexed payer,
        address indexed payee,
        uint256 settledToPayee,
        uint256 refundedToPayer
    );

    error ChannelAlreadyExists();
    error ChannelNotFound();
    error ChannelFinalized();
    error InvalidSignature();
    error AmountExceedsDeposit();
    error AmountNotIncreasing();
    error NotPayer();
    error NotPayee();
    error TransferFailed();
    error CloseNotReady();
    /// @dev Not in the draft's interface: requestClose while one is pending.
    error CloseAlreadyRequested();

    // ------------------------------------------------------------------ open

    /// @notice Open a channel; the caller is the payer and `deposit` of `token`
    /// is pulled from it (it must have approved this contract).
    function open(address payee, address token, uint128 deposit, bytes32 salt, address authorizedSigner)
        external
        returns (bytes32 channelId)
    {
        channelId = computeChannelId(msg.sender, payee, token, salt, authorizedSigner);
        Channel storage ch = _channels[channelId];
        // A finalized channel keeps its record, so an id is never reused.
        if (ch.payer != address(0)) revert ChannelAlreadyExists();

        ch.payer = msg.sender;
        ch.payee = payee;
        ch.token = token;
        ch.authorizedSigner = authorizedSigner;
        ch.deposit = deposit;

        _pull(token, msg.sender, deposit);
        emit ChannelOpened(channelId, msg.sender, payee, token, authorizedSigner, deposit);
    }

    // ---------------------------------------------------------------- settle

    /// @notice The payee claims `cumulativeAmount - settled` with a voucher,
    /// leaving the channel open. Allowed while a close request is pending.
    function settle(bytes32 channelId, uint128 cumulativeAmount, bytes calldata signature) external {
        Channel storage ch = _live(channelId);
        if (msg.sender != ch.payee) revert NotPayee();
        _checkVoucher(ch, channelId, cumulativeAmount, signature);
        if (cumulativeAmount > ch.deposit) revert AmountExceedsDeposit();
        if (cumulativeAmount <= ch.settled) revert AmountNotIncreasing();

        uint128 delta = cumulativeAmount - ch.settled;
        ch.settled = cumulativeAmount;
        _send(ch.token, ch.payee, delta);
        emit Settled(channelId, ch.payer, ch.payee, cumulativeAmount, delta, cumulativeAmount);
    }

    // ----------------------------------------------------------------- topUp

    /// @notice The payer adds to the deposit; a pending close request is cancelled.
    function topUp(bytes32 channelId, uint128 additionalDeposit) external {
        Channel storage ch = _live(channelId);
        if (msg.sender != ch.payer) revert NotPayer();

        uint128 newDeposit = ch.deposit + additionalDeposit; // reverts with Panic(0x11) past uint128
        ch.deposit = newDeposit;
        if (ch.closeRequestedAt != 0) {
            ch.closeRequestedAt = 0;
            emit CloseRequestCancelled(channelId, ch.payer, ch.payee);
        }
        _pull(ch.token, msg.sender, additionalDeposit);
        emit TopUp(channelId, ch.payer, ch.payee, additionalDeposit, newDeposit);
    }

    // ----------------------------------------------------------------- close

    /// @notice Cooperative close (draft v1): pays `cumulativeAmount - settled`
    /// to the payee, refunds `deposit - cumulativeAmount` to the payer and
    /// finalizes. Same as close(channelId, cumulativeAmount, cumulativeAmount, signature).
    function close(bytes32 channelId, uint128 cumulativeAmount, bytes calldata signature) external {
        _close(channelId, cumulativeAmount, cumulativeAmount, signature);
    }

    /// @notice Cooperative close capturing less than the close voucher authorizes.
    /// @dev Not in the draft's v1 interface. The draft's "Cooperative Close"
    /// says a server MUST NOT capture more than was consumed, and for v2 sets
    /// captureAmount = max(spent, settledOnChain) with captureAmount <= the close
    /// voucher's cumulativeAmount and <= deposit. The v1 close always captures
    /// the whole voucher, so a client that pre-authorized more than it spent
    /// would lose the difference; this overload lets a server capture exactly
    /// `captureAmount` (settled <= captureAmount <= cumulativeAmount, captureAmount
    /// <= deposit), paying `captureAmount - settled` to the payee and refunding
    /// `deposit - captureAmount` to the payer. A capture outside
    /// [settled, cumulativeAmount] reverts with AmountNotIncreasing.
    function close(bytes32 channelId, uint128 cumulativeAmount, uint128 captureAmount, bytes calldata signature)
        external
    {
        _close(channelId, cumulativeAmount, captureAmount, signature);
    }

    /// @dev Checks, in this order: the channel exists and is not finalized, the
    /// caller is the payee, the voucher signature (always, even for a voucher at
    /// or below settled), voucher <= deposit, settled <= capture <= voucher.
    function _close(bytes32 channelId, uint128 cumulativeAmount, uint128 captureAmount, bytes calldata signature)
        private
    {
        Channel storage ch = _live(channelId);
        if (msg.sender != ch.payee) revert NotPayee();
        _checkVoucher(ch, channelId, cumulativeAmount, signature);
        if (cumulativeAmount > ch.deposit) revert AmountExceedsDeposit();
        if (captureAmount < ch.settled || captureAmount > cumulativeAmount) revert AmountNotIncreasing();

        uint128 delta = captureAmount - ch.settled;
        uint128 refund = ch.deposit - captureAmount;
        ch.settled = captureAmount;
        ch.finalized = true;
        _send(ch.token, ch.payee, delta);
        _send(ch.token, ch.payer, refund);
        emit ChannelClosed(channelId, ch.payer, ch.payee, captureAmount, refund);
    }

    // ----------------------------------------------------------- forced close

    /// @notice The payer starts the grace period. The payee may still settle
    /// or close during it; a topUp cancels it.
    function requestClose(bytes32 channelId) external {
        Channel storage ch = _live(channelId);
        if (msg.sender != ch.payer) revert NotPayer();
        if (ch.closeRequestedAt != 0) revert CloseAlreadyRequested();
        ch.closeRequestedAt = uint64(block.timestamp);
        emit CloseRequested(channelId, ch.payer, ch.payee, block.timestamp + CLOSE_GRACE_PERIOD);
    }

    /// @notice After the grace period the payer takes back `deposit - settled`
    /// and the channel is finalized.
    function withdraw(bytes32 channelId) external {
        Channel storage ch = _live(channelId);
        if (msg.sender != ch.payer) revert NotPayer();
        uint256 requestedAt = ch.closeRequestedAt;
        if (requestedAt == 0 || block.timestamp < requestedAt + CLOSE_GRACE_PERIOD) revert CloseNotReady();

        uint128 refund = ch.deposit - ch.settled;
        ch.finalized = true;
        _send(ch.token, ch.payer, refund);
        emit ChannelClosed(channelId, ch.payer, ch.payee, ch.settled, refund);
    }

    // ----------------------------------------------------------------- views

    function getChannel(bytes32 channelId) external view returns (Channel memory) {
        return _channels[channelId];
    }

    function getChannelsBatch(bytes32[] calldata channelIds) external view returns (Channel[] memory out) {
        out = new Channel[](channelIds.length);
        for (uint256 i = 0; i < channelIds.length; i++) {
            out[i] = _channels[channelIds[i]];
        }
    }

    function computeChannelId(address payer, address payee, address token, bytes32 salt, address authorizedSigner)
        public
        view
        returns (bytes32)
    {
        return keccak256(abi.encode(payer, payee, token, salt, authorizedSigner, address(this), block.chainid));
    }

    function domainSeparator() public view returns (bytes32) {
        return keccak256(abi.encode(DOMAIN_TYPEHASH, NAME_HASH, VERSION_HASH, block.chainid, address(this)));
    }

    function getVoucherDigest(bytes32 channelId, uint128 cumulativeAmount) public view returns (bytes32) {
        bytes32 structHash = keccak256(abi.encode(VOUCHER_TYPEHASH, channelId, cumulativeAmount));
        return keccak256(abi.encodePacked(hex"1901", domainSeparator(), structHash));
    }

    // -------------------------------------------------------------- internals

    function _live(bytes32 channelId) private view returns (Channel storage ch) {
        ch = _channels[channelId];
        if (ch.payer == address(0)) revert ChannelNotFound();
        if (ch.finalized) revert ChannelFinalized();
    }

    function _checkVoucher(Channel storage ch, bytes32 channelId, uint128 cumulativeAmount, bytes calldata signature)
        private
        view
    {
        address expected = ch.authorizedSigner == address(0) ? ch.payer : ch.authorizedSigner;
        address signer = _recover(getVoucherDigest(channelId, cumulativeAmount), signature);
        if (signer == address(0) || signer != expected) revert InvalidSignature();
    }

    /// @dev Accepts a 65-byte r||s||v signature with v in {27, 28}, or a 64-byte
    /// EIP-2098 r||vs signature; s must be at most HALF_ORDER. Returns the zero
    /// address for anything else, and ecrecover returns it for r or s out of range.
    function _recover(bytes32 digest, bytes calldata signature) private pure returns (address) {
        bytes32 r;
        bytes32 s;
        uint8 v;
        if (signature.length == 65) {
            r = bytes32(signature[0:32]);
            s = bytes32(signature[32:64]);
            v = uint8(signature[64]);
        } else if (signature.length == 64) {
            r = bytes32(signature[0:32]);
            bytes32 vs = bytes32(signature[32:64]);
            s = vs & bytes32(0x7FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF);
            v = uint8(uint256(vs) >> 255) + 27;
        } else {
            return address(0);
        }
        if (uint256(s) > HALF_ORDER) return address(0);
        if (v != 27 && v != 28) return address(0);
        return ecrecover(digest, v, r, s);
    }

    /// @dev Escrowing nothing is refused (TransferFailed), as in the model.
    function _pull(address token, address from, uint128 amount) private {
        if (amount == 0) revert TransferFailed();
        _call(token, abi.encodeWithSignature("transferFrom(address,address,uint256)", from, address(this), amount));
    }

    function _send(address token, address to, uint128 amount) private {
        if (amount == 0) return;
        _call(token, abi.encodeWithSignature("transfer(address,uint256)", to, amount));
    }

    /// @dev A token call succeeds when it does not revert, the token has code,
    /// and it returns nothing or an ABI-encoded true. Anything else is TransferFailed.
    function _call(address token, bytes memory data) private {
        (bool ok, bytes memory ret) = token.call(data);
        if (!ok || token.code.length == 0) revert TransferFailed();
        if (ret.length != 0 && (ret.length != 32 || abi.decode(ret, (uint256)) != 1)) revert TransferFailed();
    }
}
