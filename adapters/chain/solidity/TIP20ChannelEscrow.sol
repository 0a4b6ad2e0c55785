// SPDX-License-Identifier: MIT
pragma solidity 0.8.26;

/// @title TIP20ChannelEscrow (test stand-in for the TIP-20 channel escrow precompile)
/// @notice The v2 escrow of draft-tempo-session-00 ("Precompile-Backed Channel
/// State", "Channel Descriptor") with the function names, arguments and events
/// of mppx's `Session.Precompile.escrowAbi`, so mppx's calls and log decoding
/// work against it. The evm-v2 backend places its code at the precompile's
/// address. The in-process backend (adapters/chain/memory_v2.py) mirrors it
/// check for check, in the same order, so both raise the same error.
///
/// Channels are named by their descriptor; the id is keccak256(abi.encode(
/// descriptor..., address(this), chainid)). Amounts are uint96. The operator
/// named at open (zero for none) may settle and close like the payee.
/// One stand-in: Tempo derives expiringNonceHash from the open transaction,
/// which no contract can see; here it is keccak256(abi.encode(payer, the
/// number of channels the payer opened before)), as unique per open. The
/// harness relays an SDK's own open (a Tempo transaction, whose hash it
/// decodes) through `openWithNonceHash`, which takes that hash instead.
contract TIP20ChannelEscrow {
    struct ChannelDescriptor {
        address payer;
        address payee;
        address operator;
        address token;
        bytes32 salt;
        address authorizedSigner;
        bytes32 expiringNonceHash;
    }

    struct ChannelState {
        uint96 settled;
        uint96 deposit;
        uint32 closeRequestedAt;
    }

    struct Channel {
        ChannelDescriptor descriptor;
        ChannelState state;
    }

    uint64 public constant CLOSE_GRACE_PERIOD = 15 minutes;

    bytes32 public constant VOUCHER_TYPEHASH = keccak256("Voucher(bytes32 channelId,uint96 cumulativeAmount)");

    bytes32 private constant DOMAIN_TYPEHASH =
        keccak256("EIP712Domain(string name,string version,uint256 chainId,address verifyingContract)");
    bytes32 private constant NAME_HASH = keccak256("TIP20 Channel Reserve");
    bytes32 private constant VERSION_HASH = keccak256("1");

    uint256 private constant HALF_ORDER = 0x7FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF5D576E7357A4501DDFE92F46681B20A0;

    mapping(bytes32 => Channel) private _channels;
    /// @notice Closed channels (the precompile's state has no such field; ours keeps the record).
    mapping(bytes32 => bool) public finalized;
    /// @notice How many channels each payer opened here: the input of its next expiringNonceHash.
    mapping(address => uint256) public opensOf;

    event ChannelOpened(
        bytes32 indexed channelId,
        address indexed payer,
        address indexed payee,
        address operator,
        address token,
        address authorizedSigner,
        bytes32 salt,
        bytes32 expiringNonceHash,
        uint96 deposit
    );
    event Settled(
        bytes32 indexed channelId,
        address indexed payer,
        address indexed payee,
        uint96 cumulativeAmount,
        uint96 deltaPaid,
        uint96 newSettled
    );
    event TopUp(
        bytes32 indexed channelId, address indexed payer, address indexed payee, uint96 additionalDeposit, uint96 newDeposit
    );
    event CloseRequested(bytes32 indexed channelId, address indexed payer, address indexed payee, uint256 closeGraceEnd);
    event ChannelClosed(
        bytes32 indexed channelId, address indexed payer, address indexed payee, uint96 settledToPayee, uint96 refundedToPayer
    );
    event CloseRequestCancelled(bytes32 indexed channelId, address indexed payer, address indexed payee);

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
    error CloseAlreadyRequested();

    function open(address payee, address operator, address token, uint96 deposit, bytes32 salt, address authorizedSigner)
        external
        returns (bytes32 channelId)
    {
        bytes32 nonceHash = keccak256(abi.encode(msg.sender, opensOf[msg.sender]));
        channelId = _open(ChannelDescriptor(msg.sender, payee, operator, token, salt, authorizedSigner, nonceHash), deposit);
    }

    /// @notice Harness-only: `open` with the expiringNonceHash the precompile derives from the open
    /// transaction, given by the caller. An SDK that signs a Tempo 0x76 transaction (which py-evm cannot
    /// execute) computes its channel id from that hash; the harness relays the decoded open through this
    /// entry point as the payer, so the channel the SDK named exists. The payer names only its own channels
    /// (msg.sender is the payer) and an id already in use reverts, so it grants nothing `open` does not.
    function openWithNonceHash(
        address payee,
        address operator,
        address token,
        uint96 deposit,
        bytes32 salt,
        address authorizedSigner,
        bytes32 expiringNonceHash
    ) external returns (bytes32 channelId) {
        channelId = _open(
            ChannelDescriptor(msg.sender, payee, operator, token, salt, authorizedSigner, expiringNonceHash), deposit
        );
    }

    function _open(ChannelDescriptor memory d, uint96 deposit) private returns (bytes32 channelId) {
        channelId = _id(d);
        Channel storage ch = _channels[channelId];
        if (ch.descriptor.payer != address(0)) revert ChannelAlreadyExists();

        ch.descriptor = d;
        ch.state.deposit = deposit;
        opensOf[d.payer] += 1;
        _pull(d.token, d.payer, deposit);
        emit ChannelOpened(
            channelId, d.payer, d.payee, d.operator, d.token, d.authorizedSigner, d.salt, d.expiringNonceHash, deposit
        );
    }

    function settle(ChannelDescriptor calldata descriptor, uint96 cumulativeAmount, bytes calldata signature) external {
        (bytes32 channelId, Channel storage ch) = _live(descriptor);
        _checkPayeeSide(ch);
        _checkVoucher(ch, channelId, cumulativeAmount, signature);
        if (cumulativeAmount > ch.state.deposit) revert AmountExceedsDeposit();
        if (cumulativeAmount <= ch.state.settled) revert AmountNotIncreasing();

        uint96 delta = cumulativeAmount - ch.state.settled;
        ch.state.settled = cumulativeAmount;
        _send(ch.descriptor.token, ch.descriptor.payee, delta);
        emit Settled(channelId, ch.descriptor.payer, ch.descriptor.payee, cumulativeAmount, delta, cumulativeAmount);
    }

    function topUp(ChannelDescriptor calldata descriptor, uint96 additionalDeposit) external {
        (bytes32 channelId, Channel storage ch) = _live(descriptor);
        if (msg.sender != ch.descriptor.payer) revert NotPayer();

        uint96 newDeposit = ch.state.deposit + additionalDeposit; // reverts with Panic(0x11) past uint96
        ch.state.deposit = newDeposit;
        if (ch.state.closeRequestedAt != 0) {
            ch.state.closeRequestedAt = 0;
            emit CloseRequestCancelled(channelId, ch.descriptor.payer, ch.descriptor.payee);
        }
        _pull(ch.descriptor.token, msg.sender, additionalDeposit);
        emit TopUp(channelId, ch.descriptor.payer, ch.descriptor.payee, additionalDeposit, newDeposit);
    }

    /// @notice Cooperative close capturing `captureAmount` (draft, "Cooperative Close":
    /// settled <= captureAmount <= cumulativeAmount <= deposit); refunds the rest.
    function close(
        ChannelDescriptor calldata descriptor,
        uint96 cumulativeAmount,
        uint96 captureAmount,
        bytes calldata signature
    ) external {
        (bytes32 channelId, Channel storage ch) = _live(descriptor);
        _checkPayeeSide(ch);
        _checkVoucher(ch, channelId, cumulativeAmount, signature);
        if (cumulativeAmount > ch.state.deposit) revert AmountExceedsDeposit();
        if (captureAmount < ch.state.settled || captureAmount > cumulativeAmount) revert AmountNotIncreasing();

        uint96 delta = captureAmount - ch.state.settled;
        uint96 refund = ch.state.deposit - captureAmount;
        ch.state.settled = captureAmount;
        finalized[channelId] = true;
        _send(ch.descriptor.token, ch.descriptor.payee, delta);
        _send(ch.descriptor.token, ch.descriptor.payer, refund);
        emit ChannelClosed(channelId, ch.descriptor.payer, ch.descriptor.payee, captureAmount, refund);
    }

    function requestClose(ChannelDescriptor calldata descriptor) external {
        (bytes32 channelId, Channel storage ch) = _live(descriptor);
        if (msg.sender != ch.descriptor.payer) revert NotPayer();
        if (ch.state.closeRequestedAt != 0) revert CloseAlreadyRequested();
        ch.state.closeRequestedAt = uint32(block.timestamp);
        emit CloseRequested(channelId, ch.descriptor.payer, ch.descriptor.payee, block.timestamp + CLOSE_GRACE_PERIOD);
    }

    function withdraw(ChannelDescriptor calldata descriptor) external {
        (bytes32 channelId, Channel storage ch) = _live(descriptor);
        if (msg.sender != ch.descriptor.payer) revert NotPayer();
        uint256 requestedAt = ch.state.closeRequestedAt;
        if (requestedAt == 0 || block.timestamp < requestedAt + CLOSE_GRACE_PERIOD) revert CloseNotReady();

        uint96 refund = ch.state.deposit - ch.state.settled;
        finalized[channelId] = true;
        _send(ch.descriptor.token, ch.descriptor.payer, refund);
        emit ChannelClosed(channelId, ch.descriptor.payer, ch.descriptor.payee, ch.state.settled, refund);
    }

    function getChannel(ChannelDescriptor calldata descriptor) external view returns (Channel memory) {
        return _channels[_id(descriptor)];
    }

    function getChannelState(bytes32 channelId) external view returns (ChannelState memory) {
        return _channels[channelId].state;
    }

    /// @notice The whole record by id (the precompile reads by descriptor; the harness reads by id).
    function getChannelById(bytes32 channelId) external view returns (Channel memory) {
        return _channels[channelId];
    }

    function getChannelStatesBatch(bytes32[] calldata channelIds) external view returns (ChannelState[] memory out) {
        out = new ChannelState[](channelIds.length);
        for (uint256 i = 0; i < channelIds.length; i++) {
            out[i] = _channels[channelIds[i]].state;
        }
    }

    function computeChannelId(
        address payer,
        address payee,
        address operator,
        address token,
        bytes32 salt,
        address authorizedSigner,
        bytes32 expiringNonceHash
    ) public view returns (bytes32) {
        return keccak256(
            abi.encode(
                payer, payee, operator, token, salt, authorizedSigner, expiringNonceHash, address(this), block.chainid
            )
        );
    }

    function domainSeparator() public view returns (bytes32) {
        return keccak256(abi.encode(DOMAIN_TYPEHASH, NAME_HASH, VERSION_HASH, block.chainid, address(this)));
    }

    function getVoucherDigest(bytes32 channelId, uint96 cumulativeAmount) public view returns (bytes32) {
        bytes32 structHash = keccak256(abi.encode(VOUCHER_TYPEHASH, channelId, cumulativeAmount));
        return keccak256(abi.encodePacked(hex"1901", domainSeparator(), structHash));
    }

    function _id(ChannelDescriptor memory d) private view returns (bytes32) {
        return computeChannelId(d.payer, d.payee, d.operator, d.token, d.salt, d.authorizedSigner, d.expiringNonceHash);
    }

    /// A descriptor that differs in any field hashes to another id, so it is ChannelNotFound.
    function _live(ChannelDescriptor calldata descriptor) private view returns (bytes32 channelId, Channel storage ch) {
        channelId = _id(descriptor);
        ch = _channels[channelId];
        if (ch.descriptor.payer == address(0)) revert ChannelNotFound();
        if (finalized[channelId]) revert ChannelFinalized();
    }

    function _checkPayeeSide(Channel storage ch) private view {
        address operator = ch.descriptor.operator;
        if (msg.sender != ch.descriptor.payee && (operator == address(0) || msg.sender != operator)) revert NotPayee();
    }

    function _checkVoucher(Channel storage ch, bytes32 channelId, uint96 cumulativeAmount, bytes calldata signature)
        private
        view
    {
        address signer_ = ch.descriptor.authorizedSigner;
        address expected = signer_ == address(0) ? ch.descriptor.payer : signer_;
        address signer = _recover(getVoucherDigest(channelId, cumulativeAmount), signature);
        if (signer == address(0) || signer != expected) revert InvalidSignature();
    }

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

    function _pull(address token, address from, uint96 amount) private {
        if (amount == 0) revert TransferFailed();
        _call(token, abi.encodeWithSignature("transferFrom(address,address,uint256)", from, address(this), amount));
    }

    function _send(address token, address to, uint96 amount) private {
        if (amount == 0) return;
        _call(token, abi.encodeWithSignature("transfer(address,uint256)", to, amount));
    }

    function _call(address token, bytes memory data) private {
        (bool ok, bytes memory ret) = token.call(data);
        if (!ok || token.code.length == 0) revert TransferFailed();
        if (ret.length != 0 && (ret.length != 32 || abi.decode(ret, (uint256)) != 1)) revert TransferFailed();
    }
}
