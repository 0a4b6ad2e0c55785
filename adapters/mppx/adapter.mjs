#!/usr/bin/env node
// Conformance-bridge adapter for the TypeScript SDK mppx@0.11.0, driven offline.
//
// Speaks the JSON-lines protocol of ../bridge/PROTOCOL.md on stdin/stdout: one
// request object per line in, one answer object per line out, nothing else on
// stdout (diagnostics go to stderr). Requests are handled one at a time, in order.
//
// Everything mppx needs from a chain is answered by the small in-process fake
// chain below: escrow views over eth_call (getChannelState, getChannelStatesBatch,
// getChannel), open/topUp/settle/close transactions (eth_sendRawTransaction and
// their receipts), and the fee/nonce/block reads of transaction preparation.
// Nothing here touches a network. See README.md for what mppx does and does not support.
import { readFileSync } from 'node:fs'

// Namespace imports: releases differ in what they export (see README "Releases"), and a missing named
// import would stop the adapter from starting at all; each feature is detected below instead.
import * as MppxRoot from 'mppx'
import * as MppxClientModule from 'mppx/client'
import * as MppxServerModule from 'mppx/server'
import * as MppxTempo from 'mppx/tempo'
import {
  createClient,
  custom,
  decodeFunctionData,
  encodeAbiParameters,
  encodeEventTopics,
  encodeFunctionResult,
  formatUnits,
  hashTypedData,
  isAddress,
  keccak256,
  numberToHex,
  parseTransaction,
  recoverTransactionAddress,
} from 'viem'
import { privateKeyToAccount } from 'viem/accounts'
import { tempo as tempoChain } from 'viem/chains'
import { Transaction as TempoTransaction } from 'viem/tempo'
import { realpathSync } from 'node:fs'
import { fileURLToPath, pathToFileURL } from 'node:url'

// The adapter kit (../bridge/js/kit.mjs), found from this file's real location: mppx-v1 and the release folders
// of conformance/versions.py run it through a symlink.
const HERE = pathToFileURL(realpathSync(fileURLToPath(import.meta.url)))
const {
  BridgeError,
  CallbackError,
  callHarness,
  createAdapter,
  field,
  harnessFetch,
  invalidInput,
  offered,
  readAddress,
  readAmount,
  readHex,
  readInteger,
  readString,
  rejected,
  toJson,
  unsupported,
} = await import(new URL('../bridge/js/kit.mjs', HERE).href)

// mppx exports no ./package.json; read the installed copy's version from disk. The release folders of
// conformance/versions.py run this file through a symlink (node --preserve-symlinks-main), so
// `./node_modules` is that release's install.
const MPPX_VERSION = JSON.parse(
  readFileSync(new URL('./node_modules/mppx/package.json', import.meta.url), 'utf8'),
).version

const { Challenge, Credential, Receipt } = MppxRoot
const { Session, SessionLegacy } = MppxTempo
const { Mppx: MppxServer, Store, tempo: tempoServer } = MppxServerModule
const sessionMethod = MppxClientModule.sessionMethod // v2 client: 0.7.0 and later
const MppxFetchClient = MppxClientModule.Mppx // the application entry point: Mppx.create({methods}).fetch

const ZERO_ADDRESS = '0x0000000000000000000000000000000000000000'
const ZERO_HASH = `0x${'00'.repeat(32)}`
const PRECOMPILE_ESCROW = '0x4d50500000000000000000000000000000000000'
const DECIMALS = 6

// What this release has (mppx-releases-notes.md): v2 (TIP-1034 precompile) from 0.7.0; v1 is
// `SessionLegacy.Session` from 0.7.0 and plain `Session` (no Precompile) up to 0.6.x.
const HAS_V2 = Boolean(Session?.Precompile?.Voucher)
const escrowAbi = Session?.Precompile?.escrowAbi
const VoucherV2 = Session?.Precompile?.Voucher
const VoucherV1 = SessionLegacy?.Session?.Voucher ?? (HAS_V2 ? undefined : Session?.Voucher)
// The v1 escrow's getChannel struct as this release's ABI orders it (FINDINGS.md F18): up to 0.4.8 the draft's order
// (payer ... finalized), from 0.4.12 the deployed TempoStreamChannel's (finalized, closeRequestedAt, payer ...).
// (0.1.x - 0.2.x name the v1 module `Stream`.)
const V1_CHANNEL_FIELDS = (SessionLegacy?.Session ?? (HAS_V2 ? undefined : (Session ?? MppxTempo.Stream)))?.Chain?.escrowAbi
  ?.find((x) => x.type === 'function' && x.name === 'getChannel')?.outputs?.[0]?.components?.map((c) => c.name)
const HAS_SIGNER_RESOLVER = typeof Session?.Precompile?.Channel?.resolveAuthorizedSigner === 'function'
const HAS_V2_SERVER = HAS_V2 && typeof tempoServer?.session === 'function' && typeof MppxServer?.create === 'function'
const HAS_FETCH_CLIENT = HAS_V2 && typeof sessionMethod === 'function' && typeof MppxFetchClient?.create === 'function'
// v1-only releases (up to 0.6.x): `tempo.session` is the v1 server, `session` of mppx/client the v1 client; both
// run against the harness's v1 escrow (memory), never against the fake chain (which models only the precompile).
const sessionV1 = HAS_V2 ? undefined : MppxClientModule.session
const HAS_V1_SERVER = !HAS_V2 && typeof tempoServer?.session === 'function' && typeof MppxServer?.create === 'function'
const HAS_V1_FETCH_CLIENT = typeof sessionV1 === 'function' && typeof MppxFetchClient?.create === 'function'
const HAS_SERVER = HAS_V2_SERVER || HAS_V1_SERVER
// The one-shot settle of the stored highest voucher that mppx's users call (`tempo.settle(store, client, channelId)`
// of mppx/server); releases without it answer server.settle `unsupported`.
const HAS_SETTLE = HAS_V2_SERVER && typeof tempoServer?.settle === 'function'
const SESSIONS = HAS_V2 ? ['v2'] : ['v1']

/** The v2 channel's voucher signer: mppx's own resolver from 0.8.14, else the draft's rule (zero = payer). */
function resolveAuthorizedSigner(descriptor) {
  const resolver = Session.Precompile.Channel.resolveAuthorizedSigner
  if (typeof resolver === 'function') return resolver(descriptor)
  return lower(descriptor.authorizedSigner) === ZERO_ADDRESS ? descriptor.payer : descriptor.authorizedSigner
}

function requireV2(what) {
  if (!HAS_V2) throw unsupported(`${what}: mppx ${MPPX_VERSION} has no v2 (TIP-1034) sessions (v1 only up to 0.6.x)`)
}

// Errors: every failure leaves as one of the protocol's error types (adapter kit, ../bridge/js/kit.mjs).

/** Runs an mppx call; whatever it throws is mppx refusing the input ("rejected"). */
async function byMppx(what, fn) {
  try {
    return await fn()
  } catch (error) {
    if (error instanceof BridgeError) throw error
    throw rejected(`${what}: ${error?.message ?? String(error)}`)
  }
}

// ---------------------------------------------------------------------------
// Input readers (the protocol's JSON encodings: decimal-string amounts, 0x hex).

function readVersion(input) {
  const version = readString(input, 'version')
  if (version !== 'v1' && version !== 'v2') throw invalidInput(`"version" must be "v1" or "v2"`)
  return version
}

function readAccount(input, key = 'privateKey') {
  const key32 = readHex(input, key, 32)
  try {
    return privateKeyToAccount(key32)
  } catch (error) {
    throw invalidInput(`"${key}" is not a valid secp256k1 private key: ${error.message}`)
  }
}

// ---------------------------------------------------------------------------
function lower(value) {
  return typeof value === 'string' ? value.toLowerCase() : value
}

// ---------------------------------------------------------------------------
// The fake chain: what `chain.set_channel` stored, answered over viem's custom transport.

function emptyChannelState() {
  return {
    payer: ZERO_ADDRESS,
    payee: ZERO_ADDRESS,
    token: ZERO_ADDRESS,
    authorizedSigner: ZERO_ADDRESS,
    deposit: 0n,
    settled: 0n,
    closeRequestedAt: 0n,
    finalized: false,
  }
}

function readChannelState(channelId, raw) {
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw))
    throw invalidInput(`chain state for ${channelId} must be an object`)
  const state = emptyChannelState()
  for (const key of ['payer', 'payee', 'token', 'authorizedSigner']) {
    const value = readAddress(raw, key, { optional: true })
    if (value !== undefined) state[key] = value.toLowerCase()
  }
  for (const key of ['deposit', 'settled']) {
    const value = readAmount(raw, key, { optional: true })
    if (value !== undefined) state[key] = value
  }
  const closeRequestedAt = raw.closeRequestedAt
  if (closeRequestedAt !== undefined && closeRequestedAt !== null) {
    if (typeof closeRequestedAt === 'number' && Number.isSafeInteger(closeRequestedAt) && closeRequestedAt >= 0)
      state.closeRequestedAt = BigInt(closeRequestedAt)
    else state.closeRequestedAt = readAmount(raw, 'closeRequestedAt')
  }
  if (raw.finalized !== undefined && raw.finalized !== null) {
    if (typeof raw.finalized !== 'boolean') throw invalidInput(`"finalized" must be a boolean`)
    state.finalized = raw.finalized
  }
  return state
}

function readChainMap(raw, key) {
  if (raw === undefined || raw === null) return new Map()
  if (typeof raw !== 'object' || Array.isArray(raw)) throw invalidInput(`"${key}" must be an object keyed by channelId`)
  const out = new Map()
  for (const [channelId, value] of Object.entries(raw)) {
    if (!/^0x[0-9a-fA-F]{64}$/.test(channelId)) throw invalidInput(`"${key}" key ${channelId} is not a bytes32 channelId`)
    out.set(channelId.toLowerCase(), readChannelState(channelId, value))
  }
  return out
}

const fakeChain = {
  channels: new Map(), // lowercase channelId -> state
  receipts: new Map(), // tx hash -> receipt (RPC form)
  blockNumber: 1n,
  rpcLog: [],
}

function eventLog(eventName, args, address, txHash) {
  const event = escrowAbi.find((x) => x.type === 'event' && x.name === eventName)
  const topics = encodeEventTopics({ abi: escrowAbi, eventName, args })
  const data = encodeAbiParameters(
    event.inputs.filter((i) => !i.indexed),
    event.inputs.filter((i) => !i.indexed).map((i) => args[i.name]),
  )
  return {
    address,
    topics,
    data,
    blockNumber: numberToHex(fakeChain.blockNumber),
    blockHash: keccak256(numberToHex(fakeChain.blockNumber, { size: 32 })),
    transactionHash: txHash,
    transactionIndex: '0x0',
    logIndex: '0x0',
    removed: false,
  }
}

/** Applies a client-signed Tempo transaction whose last call is the escrow's open or topUp. */
async function readRawTransaction(raw) {
  // Servers up to 0.9.0 settle and close with EIP-1559 (0x02) transactions; Tempo 0x76 otherwise.
  if (typeof raw === 'string' && raw.startsWith('0x02')) {
    const tx = parseTransaction(raw)
    const from = await recoverTransactionAddress({ serializedTransaction: raw })
    return { tx, from, calls: [{ to: tx.to, data: tx.data }] }
  }
  const tx = TempoTransaction.deserialize(raw)
  return { tx, from: tx.from, calls: tx.calls }
}

async function applyRawTransaction(chainId, raw) {
  const { tx, from, calls } = await readRawTransaction(raw)
  if (!from) throw new Error('fake chain: transaction is not signed')
  const call = calls?.at(-1)
  if (!call?.to || !call.data) throw new Error('fake chain: transaction has no escrow call')
  const escrow = call.to
  const decoded = decodeFunctionData({ abi: escrowAbi, data: call.data })
  const txHash = keccak256(raw)
  // A signed transaction is mined at most once (its nonce is then used), as on a real chain.
  if (fakeChain.receipts.has(txHash)) throw new Error('fake chain: transaction already applied (nonce used)')
  fakeChain.blockNumber += 1n
  const Channel = Session.Precompile.Channel
  let log
  if (decoded.functionName === 'open') {
    const [payee, operator, token, deposit, salt, authorizedSigner] = decoded.args
    const expiringNonceHash = Channel.computeExpiringNonceHash(
      Channel.transactionForExpiringNonceHash({ transaction: tx }),
      { sender: from },
    )
    const descriptor = { payer: from, payee, operator, token, salt, authorizedSigner, expiringNonceHash }
    const channelId = Channel.computeId({ ...descriptor, chainId, escrow }).toLowerCase()
    if (fakeChain.channels.has(channelId)) throw new Error('fake chain: ChannelAlreadyExists')
    fakeChain.channels.set(channelId, {
      payer: from.toLowerCase(),
      payee: payee.toLowerCase(),
      token: token.toLowerCase(),
      authorizedSigner: authorizedSigner.toLowerCase(),
      deposit,
      settled: 0n,
      closeRequestedAt: 0n,
      finalized: false,
    })
    log = eventLog('ChannelOpened', { channelId, payer: from, payee, operator, token, authorizedSigner, salt, expiringNonceHash, deposit }, escrow, txHash)
  } else if (decoded.functionName === 'topUp') {
    const [descriptor, additionalDeposit] = decoded.args
    const channelId = Channel.computeId({ ...descriptor, chainId, escrow }).toLowerCase()
    const state = fakeChain.channels.get(channelId)
    if (!state || state.finalized) throw new Error('fake chain: ChannelNotFound')
    state.deposit += additionalDeposit
    state.closeRequestedAt = 0n
    log = eventLog('TopUp', { channelId, payer: descriptor.payer, payee: descriptor.payee, additionalDeposit, newDeposit: state.deposit }, escrow, txHash)
  } else if (decoded.functionName === 'close' || decoded.functionName === 'settle') {
    const [descriptor, cumulativeAmount, a3, a4] = decoded.args
    const captureAmount = decoded.functionName === 'close' ? a3 : cumulativeAmount
    const signature = decoded.functionName === 'close' ? a4 : a3
    const channelId = Channel.computeId({ ...descriptor, chainId, escrow }).toLowerCase()
    const state = fakeChain.channels.get(channelId)
    if (!state || state.finalized) throw new Error('fake chain: ChannelNotFound')
    if (from.toLowerCase() !== state.payee && from.toLowerCase() !== lower(descriptor.operator))
      throw new Error('fake chain: NotPayee')
    const signer = resolveAuthorizedSigner(descriptor)
    if (!VoucherV2.verifyVoucher(escrow, chainId, { channelId, cumulativeAmount, signature }, signer))
      throw new Error('fake chain: InvalidSignature')
    if (cumulativeAmount > state.deposit || captureAmount > cumulativeAmount || captureAmount < state.settled)
      throw new Error('fake chain: AmountExceedsDeposit')
    const before = state.settled
    if (decoded.functionName === 'settle') {
      state.settled = captureAmount
      log = eventLog('Settled', { channelId, payer: descriptor.payer, payee: descriptor.payee, cumulativeAmount, deltaPaid: captureAmount - before, newSettled: captureAmount }, escrow, txHash)
    } else {
      const refunded = state.deposit - captureAmount
      state.settled = captureAmount
      state.finalized = true
      log = eventLog('ChannelClosed', { channelId, payer: descriptor.payer, payee: descriptor.payee, settledToPayee: captureAmount - before, refundedToPayer: refunded }, escrow, txHash)
    }
  } else {
    throw new Error(`fake chain: escrow ${decoded.functionName} by transaction is not modelled`)
  }
  fakeChain.receipts.set(txHash, {
    transactionHash: txHash,
    transactionIndex: '0x0',
    blockHash: log.blockHash,
    blockNumber: log.blockNumber,
    from,
    to: escrow,
    cumulativeGasUsed: '0x5208',
    gasUsed: '0x5208',
    effectiveGasPrice: '0x1',
    contractAddress: null,
    logs: [log],
    logsBloom: `0x${'00'.repeat(256)}`,
    status: '0x1',
    type: '0x76',
  })
  return txHash
}

/** The v2 precompile's view of a channel: (settled, deposit, closeRequestedAt); closed or unknown read as zero. */
function precompileView(state) {
  if (!state || state.finalized) return { settled: 0n, deposit: 0n, closeRequestedAt: 0 }
  return { settled: state.settled, deposit: state.deposit, closeRequestedAt: Number(state.closeRequestedAt) }
}

function makeRpc(chainId, overrides = new Map()) {
  const lookup = (channelId) => overrides.get(channelId.toLowerCase()) ?? fakeChain.channels.get(channelId.toLowerCase())
  return async ({ method, params }) => {
    fakeChain.rpcLog.push(method)
    switch (method) {
      case 'eth_chainId':
        return numberToHex(chainId)
      case 'eth_blockNumber':
        return numberToHex(fakeChain.blockNumber)
      case 'eth_call': {
        const [call] = params
        let decoded
        try {
          decoded = call.data ? decodeFunctionData({ abi: escrowAbi, data: call.data }) : undefined
        } catch {}
        // Anything that is not an escrow view (e.g. the simulation of an open/topUp
        // transaction before broadcast) succeeds with empty return data.
        if (!decoded || !['getChannelState', 'getChannelStatesBatch', 'getChannel'].includes(decoded.functionName))
          return '0x'
        if (decoded.functionName === 'getChannelState')
          return encodeFunctionResult({
            abi: escrowAbi,
            functionName: 'getChannelState',
            result: precompileView(lookup(decoded.args[0])),
          })
        if (decoded.functionName === 'getChannel') {
          const descriptor = decoded.args[0]
          const id = Session.Precompile.Channel.computeId({ ...descriptor, chainId, escrow: call.to })
          return encodeFunctionResult({
            abi: escrowAbi,
            functionName: 'getChannel',
            result: { descriptor, state: precompileView(lookup(id)) },
          })
        }
        if (decoded.functionName === 'getChannelStatesBatch')
          return encodeFunctionResult({
            abi: escrowAbi,
            functionName: 'getChannelStatesBatch',
            result: decoded.args[0].map((id) => precompileView(lookup(id))),
          })
        throw new Error(`fake chain: eth_call ${decoded.functionName} is not modelled`)
      }
      case 'eth_sendRawTransaction':
      case 'eth_sendRawTransactionSync': {
        const hash = await applyRawTransaction(chainId, params[0])
        return method === 'eth_sendRawTransaction' ? hash : fakeChain.receipts.get(hash)
      }
      case 'eth_getTransactionReceipt':
        return fakeChain.receipts.get(params[0]) ?? null
      case 'eth_getTransactionCount':
        return '0x0'
      case 'eth_gasPrice':
      case 'eth_maxPriorityFeePerGas':
        return '0x1'
      case 'eth_estimateGas':
        return numberToHex(500_000n)
      case 'eth_getBlockByNumber':
        return {
          number: numberToHex(fakeChain.blockNumber),
          hash: keccak256(numberToHex(fakeChain.blockNumber, { size: 32 })),
          parentHash: ZERO_HASH,
          timestamp: numberToHex(1_700_000_000),
          baseFeePerGas: '0x1',
          gasLimit: numberToHex(30_000_000n),
          gasUsed: '0x0',
          transactions: [],
          miner: ZERO_ADDRESS,
          difficulty: '0x0',
          extraData: '0x',
          logsBloom: `0x${'00'.repeat(256)}`,
          nonce: '0x0000000000000000',
          receiptsRoot: ZERO_HASH,
          sha3Uncles: ZERO_HASH,
          size: '0x0',
          stateRoot: ZERO_HASH,
          totalDifficulty: '0x0',
          transactionsRoot: ZERO_HASH,
          uncles: [],
        }
      default:
        throw new Error(`fake chain: RPC method ${method} is not modelled by the mppx adapter`)
    }
  }
}

function makeViemClient(chainId, overrides) {
  return createClient({
    chain: { ...tempoChain, id: chainId },
    pollingInterval: 10,
    transport: custom({ request: makeRpc(chainId, overrides) }, { retryCount: 0 }),
  })
}

/** What a raw transaction asks (PROTOCOL.md section 8, `rpc`): its type, recovered sender, calls (each with the
 * escrow function decoded when it is one) and, for a v2 open, the expiringNonceHash the precompile derives from
 * it. Handed to the harness with eth_sendRawTransaction(Sync), so its chain can apply the calls as the sender. */
async function describeTransaction(raw) {
  const { tx, from, calls } = await readRawTransaction(raw)
  const out = {
    type: typeof raw === 'string' ? raw.slice(0, 4) : '',
    from: from ? from.toLowerCase() : null,
    chainId: tx.chainId ?? null,
    nonce: tx.nonce === undefined ? null : Number(tx.nonce),
    calls: [],
  }
  for (const call of calls ?? []) {
    const entry = { to: lower(call.to ?? ZERO_ADDRESS), data: call.data ?? '0x' }
    if (escrowAbi) {
      try {
        const decoded = decodeFunctionData({ abi: escrowAbi, data: call.data })
        entry.function = decoded.functionName
        entry.args = toJson(decoded.args)
      } catch {}
    }
    out.calls.push(entry)
  }
  const open = out.calls.find((c) => c.function === 'open')
  if (open && from && Session?.Precompile?.Channel?.computeExpiringNonceHash) {
    const Channel = Session.Precompile.Channel
    out.expiringNonceHash = Channel.computeExpiringNonceHash(
      Channel.transactionForExpiringNonceHash({ transaction: tx }),
      { sender: from },
    ).toLowerCase()
  }
  return out
}

/** An EIP-1193 request function answered by the harness's chain (the rpc callback); raw transactions travel
 * with their decoding (`decoded`). */
function harnessRpc(tag) {
  return async ({ method, params }) => {
    fakeChain.rpcLog.push(method)
    const request = { method, params: params ?? [] }
    if ((method === 'eth_sendRawTransaction' || method === 'eth_sendRawTransactionSync') && params?.[0])
      request.decoded = await describeTransaction(params[0])
    if (tag) request.side = tag
    try {
      return await callHarness('rpc', request)
    } catch (error) {
      if (error instanceof CallbackError) throw new Error(`harness rpc ${method}: ${error.type}: ${error.message}`)
      throw error
    }
  }
}

/** The server's viem client: the harness's chain while the running op offers the rpc callback, else the fake chain. */
function makeServerViemClient(chainId) {
  const fake = makeRpc(chainId)
  const harness = harnessRpc('server')
  return createClient({
    chain: { ...tempoChain, id: chainId },
    pollingInterval: 10,
    transport: custom({ request: (args) => (offered('rpc') ? harness(args) : fake(args)) }, { retryCount: 0 }),
  })
}

// ---------------------------------------------------------------------------
// Vouchers.

/** A client with no chain behind it; local-account signing never reaches it. */
const offlineClient = createClient({
  chain: tempoChain,
  transport: custom({
    request: async ({ method }) => {
      throw new Error(`voucher signing unexpectedly needed RPC ${method}`)
    },
  }),
})

function voucherInput(input) {
  return {
    version: readVersion(input),
    chainId: readInteger(input, 'chainId'),
    verifyingContract: readAddress(input, 'verifyingContract'),
    channelId: readHex(input, 'channelId', 32),
    cumulativeAmount: readAmount(input, 'cumulativeAmount'),
  }
}

function voucherModule(version) {
  const Voucher = version === 'v1' ? VoucherV1 : VoucherV2
  if (!Voucher) throw unsupported(`mppx ${MPPX_VERSION} has no ${version} voucher module`)
  return Voucher
}

async function voucherSign(input) {
  const v = voucherInput(input)
  const account = readAccount(input)
  const Voucher = voucherModule(v.version)
  const signature = await byMppx(`${v.version} signVoucher`, () =>
    Voucher.signVoucher(
      offlineClient,
      account,
      { channelId: v.channelId, cumulativeAmount: v.cumulativeAmount },
      v.verifyingContract,
      v.chainId,
    ),
  )
  return { signature: signature.toLowerCase() }
}

async function voucherVerify(input) {
  const v = voucherInput(input)
  const signature = readHex(input, 'signature')
  const signer = readAddress(input, 'signer')
  const Voucher = voucherModule(v.version)
  // Both verifiers return false (never throw) for a signature they refuse.
  const valid = await byMppx(`${v.version} verifyVoucher`, () =>
    Voucher.verifyVoucher(
      v.verifyingContract,
      v.chainId,
      { channelId: v.channelId, cumulativeAmount: v.cumulativeAmount, signature },
      signer,
    ),
  )
  return { valid: valid === true }
}

async function voucherDigest(input) {
  const v = voucherInput(input)
  if (v.version === 'v1')
    throw unsupported(
      `mppx ${MPPX_VERSION} exports no v1 voucher domain or digest (its v1 Voucher module has only sign/verify/parse)`,
    )
  requireV2('voucher.digest v2')
  // v2: mppx's exported domain and types, hashed with viem's EIP-712 hasher (what mppx signs).
  const digest = await byMppx('v2 voucher digest', () =>
    hashTypedData({
      domain: VoucherV2.getVoucherDomain(v.verifyingContract, v.chainId),
      types: VoucherV2.voucherTypes,
      primaryType: 'Voucher',
      message: { channelId: v.channelId, cumulativeAmount: v.cumulativeAmount },
    }),
  )
  return { digest }
}

// ---------------------------------------------------------------------------
// Header codecs.

function challengeJson(challenge) {
  return toJson(challenge)
}

async function challengeParse(input) {
  const header = readString(input, 'header')
  const list = await byMppx('Challenge.deserializeList', () => Challenge.deserializeList(header))
  return list.map(challengeJson)
}

async function challengeFormat(input) {
  const raw = field(input, 'challenge')
  const list = Array.isArray(raw) ? raw : [raw]
  const secretKey = readString(input, 'secretKey', { optional: true })
  const headers = await byMppx('Challenge.serialize', () =>
    list.map((c) => {
      if (typeof c !== 'object' || c === null) throw invalidInput('"challenge" must be an object or a list of objects')
      const challenge = c.id === undefined && secretKey ? Challenge.from({ ...c, secretKey }) : Challenge.from(c)
      return Challenge.serialize(challenge)
    }),
  )
  return { header: headers.join(', ') }
}

async function credentialParse(input) {
  const header = readString(input, 'header')
  return toJson(await byMppx('Credential.deserialize', () => Credential.deserialize(header)))
}

async function credentialFormat(input) {
  const credential = field(input, 'credential')
  if (typeof credential !== 'object' || credential.challenge === undefined)
    throw invalidInput('"credential" must be an object with "challenge" and "payload"')
  const header = await byMppx('Credential.serialize', () => Credential.serialize(Credential.from(credential)))
  return { header }
}

/** Receipt.deserialize, plus the session fields (channelId, acceptedCumulative, spent, units) that releases
 * before 0.8.6 drop while decoding: those are read from the header's own JSON. */
function decodeReceipt(header) {
  const decoded = Receipt.deserialize(header)
  let raw
  try {
    raw = JSON.parse(Buffer.from(header, 'base64url').toString('utf8'))
  } catch {
    return decoded
  }
  const out = { ...decoded }
  for (const key of ['channelId', 'acceptedCumulative', 'spent', 'units'])
    if (out[key] === undefined && raw?.[key] !== undefined) out[key] = raw[key]
  return out
}

async function receiptParse(input) {
  const header = readString(input, 'header')
  return toJson(await byMppx('Receipt.deserialize', () => decodeReceipt(header)))
}

async function receiptFormat(input) {
  const receipt = field(input, 'receipt')
  const header = await byMppx('Receipt.serialize', () => Receipt.serialize(Receipt.from(receipt)))
  return { header }
}

async function snapshotParse(input) {
  requireV2('snapshot.parse')
  const header = readString(input, 'header')
  return toJson(await byMppx('Session.deserializeSnapshot', () => Session.deserializeSnapshot(header)))
}

async function snapshotFormat(input) {
  requireV2('snapshot.format')
  const snapshot = field(input, 'snapshot')
  const header = await byMppx('Session.serializeSnapshot', () => Session.serializeSnapshot(snapshot))
  return { header }
}

// ---------------------------------------------------------------------------
// Client: sessionMethod(...).createCredential for one challenge.

function readStoreEntries(raw) {
  if (raw === undefined || raw === null) return []
  const list = Array.isArray(raw) ? raw : Object.values(raw)
  return list.map((e, i) => {
    if (typeof e !== 'object' || e === null) throw invalidInput(`store[${i}] must be an object`)
    const descriptor = field(e, 'descriptor')
    return {
      channelId: readHex(e, 'channelId', 32),
      cumulativeAmount: readAmount(e, 'cumulativeAmount'),
      deposit: readAmount(e, 'deposit'),
      descriptor: readDescriptor(descriptor, 'store descriptor'),
      escrow: readAddress(e, 'escrow'),
      chainId: readInteger(e, 'chainId'),
      opened: e.opened === undefined ? true : Boolean(e.opened),
    }
  })
}

function readDescriptor(raw, what, defaults = {}) {
  if (typeof raw !== 'object' || raw === null) throw invalidInput(`${what} must be an object`)
  const pick = (key, reader) => {
    const value = raw[key] === undefined ? defaults[key] : reader({ [key]: raw[key] }, key)
    if (value === undefined) throw invalidInput(`${what} is missing "${key}"`)
    return value
  }
  return {
    payer: pick('payer', readAddress),
    payee: pick('payee', readAddress),
    operator: pick('operator', readAddress),
    token: pick('token', readAddress),
    salt: pick('salt', (o, k) => readHex(o, k, 32)),
    authorizedSigner: pick('authorizedSigner', readAddress),
    expiringNonceHash: pick('expiringNonceHash', (o, k) => readHex(o, k, 32)),
  }
}

async function clientNextCredential(input) {
  requireV2('client.next_credential')
  const account = readAccount(input)
  const header = readString(input, 'challenge')
  const overrides = readChainMap(input.chain, 'chain')
  const entries = readStoreEntries(input.store)
  const allowCustomEscrow = input.allowCustomEscrow === undefined ? true : Boolean(input.allowCustomEscrow)
  const maxDeposit = readAmount(input, 'maxDeposit', { optional: true })
  const context = input.context === undefined || input.context === null ? undefined : input.context

  const challenges = await byMppx('Challenge.deserializeList', () => Challenge.deserializeList(header))
  const challenge = challenges.find((c) => c.method === 'tempo' && c.intent === 'session')
  if (!challenge) throw rejected('no tempo/session challenge in the header')
  const md = challenge.request.methodDetails ?? {}
  const chainId = typeof md.chainId === 'number' ? md.chainId : tempoChain.id

  const entriesByKey = new Map()
  for (const e of entries)
    entriesByKey.set(
      `${lower(e.descriptor.payee)}:${lower(e.descriptor.token)}:${lower(e.escrow)}:${e.chainId}`,
      e,
    )
  const channelStore = {
    get: (key) => entriesByKey.get(key),
    set: (entry) => {
      entriesByKey.set(
        `${lower(entry.descriptor.payee)}:${lower(entry.descriptor.token)}:${lower(entry.escrow)}:${entry.chainId}`,
        entry,
      )
    },
    delete: (key) => {
      entriesByKey.delete(key)
    },
  }
  const client = makeViemClient(chainId, overrides)
  const rpcStart = fakeChain.rpcLog.length
  const method = sessionMethod({
    account,
    allowCustomEscrow,
    channelStore,
    getClient: () => client,
    ...(maxDeposit !== undefined ? { maxDeposit: formatUnits(maxDeposit, DECIMALS) } : {}),
  })
  const authorization = await byMppx('sessionMethod.createCredential', () =>
    method.createCredential({ challenge, context }),
  )
  const credential = Credential.deserialize(authorization)
  return {
    authorization,
    credential: toJson(credential),
    store: toJson([...entriesByKey.values()]),
    rpc: fakeChain.rpcLog.slice(rpcStart),
    ignored: input.history === undefined ? [] : ['history'],
  }
}

// ---------------------------------------------------------------------------
// Callbacks (PROTOCOL.md section 8): callHarness, harnessFetch and offered() come from the adapter kit.

/** viem transport for the client: the harness's chain over the rpc callback when it offers one, else the fake chain. */
function clientChain(chainId, overrides) {
  if (!offered('rpc')) return { source: 'adapter-fake-chain', client: makeViemClient(chainId, overrides) }
  const request = harnessRpc('client')
  return {
    source: 'harness-rpc',
    client: createClient({
      chain: { ...tempoChain, id: chainId },
      pollingInterval: 10,
      transport: custom({ request }, { retryCount: 0 }),
    }),
  }
}

// ---------------------------------------------------------------------------
// Client as applications run it: Mppx.create({methods: [sessionMethod(...)]}).fetch, one instance per payer
// key kept between calls (its channel store, credential reuse and acknowledgements live there).

const fetchClients = new Map() // lowercase payer address -> {entries, mppx, chains}

function storeKey(entry) {
  return `${lower(entry.descriptor.payee)}:${lower(entry.descriptor.token)}:${lower(entry.escrow)}:${entry.chainId}`
}

/** The v1 fetch client of releases up to 0.6.x: `Mppx.create({methods: [session({account, getClient, maxDeposit,
 * onChannelUpdate})]})`. It has no channel store option, so a restart is always a fresh install; its entries
 * (from onChannelUpdate) are reported as `store`. */
function makeV1FetchClient(account, input) {
  const entriesByKey = new Map()
  const state = { entriesByKey, overrides: new Map(), chainSource: undefined, v1: true }
  const maxDeposit = readAmount(input, 'maxDeposit', { optional: true })
  const method = sessionV1({
    account,
    getClient: ({ chainId } = {}) => {
      const chain = clientChain(chainId ?? tempoChain.id, state.overrides)
      state.chainSource = chain.source
      return chain.client
    },
    ...(maxDeposit !== undefined ? { maxDeposit: formatUnits(maxDeposit, DECIMALS) } : {}),
    onChannelUpdate: (entry) => {
      entriesByKey.set(lower(entry.channelId), {
        channelId: lower(entry.channelId),
        cumulativeAmount: entry.cumulativeAmount,
        escrow: lower(entry.escrowContract),
        chainId: entry.chainId,
        opened: entry.opened !== false,
      })
    },
  })
  state.mppx = MppxFetchClient.create({ methods: [method], fetch: harnessFetch, polyfill: false })
  return state
}

function makeFetchClient(account, entries, input) {
  const entriesByKey = new Map(entries.map((e) => [storeKey(e), e]))
  const channelStore = {
    get: (key) => entriesByKey.get(key),
    set: (entry) => {
      entriesByKey.set(storeKey(entry), entry)
    },
    delete: (key) => {
      entriesByKey.delete(key)
    },
  }
  const state = { entriesByKey, overrides: new Map(), chainSource: undefined }
  const allowCustomEscrow = input.allowCustomEscrow === undefined ? true : Boolean(input.allowCustomEscrow)
  const maxDeposit = readAmount(input, 'maxDeposit', { optional: true })
  // topUpAmount: the automatic top-up of the fetch layer (0.8.14+; earlier releases ignore the option).
  const topUpAmount = readAmount(input, 'topUpAmount', { optional: true })
  const method = sessionMethod({
    account,
    allowCustomEscrow,
    channelStore,
    ...(topUpAmount !== undefined ? { topUpAmount: formatUnits(topUpAmount, DECIMALS) } : {}),
    getClient: ({ chainId } = {}) => {
      const chain = clientChain(chainId ?? tempoChain.id, state.overrides)
      state.chainSource = chain.source
      return chain.client
    },
    ...(maxDeposit !== undefined ? { maxDeposit: formatUnits(maxDeposit, DECIMALS) } : {}),
  })
  // polyfill: false keeps globalThis.fetch untouched; every request goes through the harness.
  state.mppx = MppxFetchClient.create({ methods: [method], fetch: harnessFetch, polyfill: false })
  return state
}

async function clientFetch(input) {
  if (!HAS_FETCH_CLIENT && !HAS_V1_FETCH_CLIENT)
    throw unsupported(`mppx ${MPPX_VERSION} has no fetch client (Mppx.create + sessionMethod / session)`)
  if (!offered('http'))
    throw unsupported('client.fetch needs the http callback: the harness answers every request mppx makes')
  const account = readAccount(input)
  const url = readString(input, 'url')
  const method = (readString(input, 'method', { optional: true }) ?? 'GET').toUpperCase()
  const headers = input.headers ?? {}
  if (typeof headers !== 'object' || Array.isArray(headers)) throw invalidInput('"headers" must be an object')
  const body = input.body === undefined || input.body === null ? undefined : String(input.body)
  // One client instance per payer key, or per `instance` name when given (two devices of one payer).
  const instance = readString(input, 'instance', { optional: true })
  const key = instance ?? account.address.toLowerCase()
  let state = fetchClients.get(key)
  // `store` given: the application (re)starts with that saved channel store (`[]`: a fresh install).
  if (!state || input.store !== undefined) {
    state = HAS_FETCH_CLIENT ? makeFetchClient(account, readStoreEntries(input.store), input) : makeV1FetchClient(account, input)
    fetchClients.set(key, state)
  }
  state.overrides = readChainMap(input.chain, 'chain')
  const rpcStart = fakeChain.rpcLog.length
  let response
  let thrown
  try {
    response = await state.mppx.fetch(url, {
      method,
      headers,
      ...(body !== undefined && method !== 'GET' && method !== 'HEAD' ? { body } : {}),
    })
  } catch (error) {
    if (error instanceof BridgeError) throw error
    thrown = { name: error?.name ?? 'Error', message: error?.message ?? String(error), network: error instanceof TypeError && /fetch failed/.test(error.message) }
  }
  const out = {
    store: toJson([...state.entriesByKey.values()]),
    ...(state.v1 ? { persists: false } : {}),
    rpc: fakeChain.rpcLog.slice(rpcStart),
    chainSource: state.chainSource ?? (offered('rpc') ? 'harness-rpc' : 'adapter-fake-chain'),
  }
  if (thrown) return { ...out, thrown }
  return { ...out, response: await responseJson(response) }
}

// ---------------------------------------------------------------------------
// Server: Mppx.create({methods: [tempo.session(...)]}) with Store.memory().

const DEFAULT_SERVER = {
  realm: 'conformance.test',
  secretKey: 'conformance-secret-key-0123456789abcdef',
  payeePrivateKey: '0x00000000000000000000000000000000000000000000000000000000000000b0',
  currency: '0x20c0000000000000000000000000000000000000',
  chainId: 4217,
  escrowContract: '0x9d136eea063ede5418a6bc7beaff009bbb6cfa70',
  amount: 10000n,
  unitType: 'request',
  suggestedDeposit: undefined,
  minVoucherDelta: undefined,
  // undefined: mppx's own default (a fresh expiry per challenge), as deployed servers run it.
  expires: undefined,
  origin: 'https://conformance.test',
}

let server = null

function serverConfig(input = {}) {
  const cfg = { ...DEFAULT_SERVER }
  for (const key of ['realm', 'secretKey', 'unitType', 'expires', 'origin']) {
    const v = readString(input, key, { optional: true })
    if (v !== undefined) cfg[key] = v
  }
  const payee = readHex(input, 'payeePrivateKey', 32, { optional: true })
  if (payee !== undefined) cfg.payeePrivateKey = payee
  for (const key of ['currency', 'escrowContract']) {
    const v = readAddress(input, key, { optional: true })
    if (v !== undefined) cfg[key] = v.toLowerCase()
  }
  const chainId = readInteger(input, 'chainId', { optional: true })
  if (chainId !== undefined) cfg.chainId = chainId
  for (const key of ['amount', 'suggestedDeposit', 'minVoucherDelta']) {
    const v = readAmount(input, key, { optional: true })
    if (v !== undefined) cfg[key] = v
  }
  return cfg
}

function makeServer(cfg, store = Store.memory()) {
  const account = privateKeyToAccount(cfg.payeePrivateKey)
  const client = makeServerViemClient(cfg.chainId)
  if (!HAS_SERVER) throw unsupported(`mppx ${MPPX_VERSION} has no session server (Mppx.create + tempo.session)`)
  const mppx = MppxServer.create({
    realm: cfg.realm,
    secretKey: cfg.secretKey,
    methods: [
      tempoServer.session({
        account,
        currency: cfg.currency,
        chainId: cfg.chainId,
        escrowContract: cfg.escrowContract,
        getClient: () => client,
        store,
        amount: formatUnits(cfg.amount, DECIMALS),
        unitType: cfg.unitType,
        channelStateTtl: 0,
        ...(cfg.suggestedDeposit !== undefined ? { suggestedDeposit: formatUnits(cfg.suggestedDeposit, DECIMALS) } : {}),
        ...(cfg.minVoucherDelta !== undefined ? { minVoucherDelta: formatUnits(cfg.minVoucherDelta, DECIMALS) } : {}),
        // The client names its reusable channel with the Payment-Session request header.
        resolveChannelId: ({ request }) => request?.headers?.get?.('payment-session') ?? null,
      }),
    ],
  })
  const route = mppx.session(cfg.expires === undefined ? {} : { expires: cfg.expires })
  return { cfg, store, account, client, mppx, route }
}

function getServer() {
  if (!server) server = makeServer(serverConfig())
  return server
}

async function serverConfigure(input) {
  const cfg = serverConfig(input)
  server = makeServer(cfg)
  return {
    realm: cfg.realm,
    recipient: server.account.address.toLowerCase(),
    currency: cfg.currency.toLowerCase(),
    chainId: cfg.chainId,
    escrowContract: cfg.escrowContract.toLowerCase(),
    amount: cfg.amount.toString(),
    expires: cfg.expires,
  }
}

function computeChannelId(descriptor, chainId, escrow) {
  return Session.Precompile.Channel.computeId({ ...descriptor, chainId, escrow }).toLowerCase()
}

async function serverSeedChannel(input) {
  requireV2('server.seed_channel')
  const s = getServer()
  const { cfg } = s
  let descriptorRaw = input.descriptor ?? {}
  let payerAccount
  if (input.payerPrivateKey !== undefined) payerAccount = readAccount(input, 'payerPrivateKey')
  if (descriptorRaw.payer === undefined && payerAccount) descriptorRaw = { ...descriptorRaw, payer: payerAccount.address }
  const descriptor = lowerDescriptor(readDescriptor(descriptorRaw, '"descriptor"', {
    payee: s.account.address,
    operator: ZERO_ADDRESS,
    token: cfg.currency,
    salt: `0x${'00'.repeat(31)}01`,
    // Releases before 0.8.14 (no Channel.resolveAuthorizedSigner) sign only for a descriptor that names the payer
    // as its signer; from 0.8.14 zero means "the payer".
    authorizedSigner: HAS_SIGNER_RESOLVER ? ZERO_ADDRESS : descriptorRaw.payer,
    expiringNonceHash: `0x${'00'.repeat(31)}02`,
  }))
  const channelId = computeChannelId(descriptor, cfg.chainId, cfg.escrowContract)
  const given = readHex(input, 'channelId', 32, { optional: true })
  if (given !== undefined && given.toLowerCase() !== channelId)
    throw invalidInput(
      `channelId ${given} does not match the v2 descriptor (keccak of the descriptor, escrow and chainId gives ${channelId}); pass the descriptor that derives it or omit channelId`,
    )
  const deposit = readAmount(input, 'deposit')
  const spent = readAmount(input, 'spent', { optional: true }) ?? 0n
  const settled = readAmount(input, 'settled', { optional: true }) ?? 0n
  const units = readInteger(input, 'units', { optional: true }) ?? 0
  const finalized = input.finalized === undefined ? false : Boolean(input.finalized)
  const closeRequestedAt = readAmount(input, 'closeRequestedAt', { optional: true }) ?? 0n

  let highest = null
  const hv = input.highestVoucher
  if (hv !== undefined && hv !== null) {
    const amount = readAmount(hv, 'cumulativeAmount')
    let signature = readHex(hv, 'signature', undefined, { optional: true })
    if (signature === undefined) {
      if (!payerAccount) throw invalidInput('highestVoucher needs "signature" or a top-level "payerPrivateKey" to sign it')
      signature = await VoucherV2.signVoucher(
        offlineClient,
        payerAccount,
        { channelId, cumulativeAmount: amount },
        cfg.escrowContract,
        cfg.chainId,
      )
    }
    highest = { channelId, cumulativeAmount: amount, signature }
  }
  const authorizedSigner =
    descriptor.authorizedSigner.toLowerCase() === ZERO_ADDRESS ? descriptor.payer : descriptor.authorizedSigner
  const record = {
    backend: 'precompile',
    chainId: cfg.chainId,
    channelId,
    descriptor,
    escrowContract: cfg.escrowContract,
    expiringNonceHash: descriptor.expiringNonceHash,
    operator: descriptor.operator,
    payee: descriptor.payee,
    payer: descriptor.payer,
    salt: descriptor.salt,
    token: descriptor.token,
    authorizedSigner,
    closeRequestedAt,
    deposit,
    settledOnChain: settled,
    highestVoucherAmount: highest ? highest.cumulativeAmount : 0n,
    highestVoucher: highest,
    spent,
    units,
    finalized,
    createdAt: '2000-01-01T00:00:00.000Z',
  }
  await s.store.put(channelId, record)
  if (input.onChain !== false)
    fakeChain.channels.set(channelId, {
      payer: descriptor.payer.toLowerCase(),
      payee: descriptor.payee.toLowerCase(),
      token: descriptor.token.toLowerCase(),
      authorizedSigner: descriptor.authorizedSigner.toLowerCase(),
      deposit,
      settled,
      closeRequestedAt,
      finalized,
    })
  return { channelId, descriptor: toJson(lowerDescriptor(descriptor)), record: recordJson(record) }
}

function lowerDescriptor(d) {
  return Object.fromEntries(Object.entries(d).map(([k, v]) => [k, lower(v)]))
}

function recordJson(record) {
  if (!record) return null
  return toJson({
    channelId: record.channelId,
    acceptedCumulative: record.highestVoucherAmount,
    highestVoucher: record.highestVoucher,
    spent: record.spent,
    deposit: record.deposit,
    settled: record.settledOnChain,
    units: record.units,
    finalized: record.finalized,
    closeRequestedAt: record.closeRequestedAt,
    descriptor: record.descriptor ? lowerDescriptor(record.descriptor) : undefined,
    payer: lower(record.payer),
    authorizedSigner: lower(record.authorizedSigner),
  })
}

async function serverRecord(input) {
  const channelId = readHex(input, 'channelId', 32).toLowerCase()
  const record = await getServer().store.get(channelId)
  return recordJson(record)
}

function buildRequest(input, { withAuthorization }) {
  const s = getServer()
  const method = (readString(input, 'method', { optional: true }) ?? 'GET').toUpperCase()
  const path = readString(input, 'path', { optional: true }) ?? '/resource'
  if (!path.startsWith('/')) throw invalidInput('"path" must start with "/"')
  const headers = new Headers()
  const extra = input.headers
  if (extra !== undefined && extra !== null) {
    if (typeof extra !== 'object' || Array.isArray(extra)) throw invalidInput('"headers" must be an object')
    for (const [k, v] of Object.entries(extra)) headers.set(k, String(v))
  }
  if (withAuthorization) {
    const authorization = readString(input, 'authorization', { optional: true })
    if (authorization !== undefined) headers.set('authorization', authorization)
  }
  const idempotencyKey = readString(input, 'idempotencyKey', { optional: true })
  if (idempotencyKey !== undefined) headers.set('idempotency-key', idempotencyKey)
  const channelId = readHex(input, 'channelId', 32, { optional: true })
  if (channelId !== undefined) headers.set('payment-session', channelId)
  const body = input.body === undefined || input.body === null ? undefined : String(input.body)
  if (body !== undefined && (method === 'GET' || method === 'HEAD'))
    throw invalidInput('"body" is not allowed on GET or HEAD')
  return new Request(new URL(path, s.cfg.origin), { method, headers, ...(body !== undefined ? { body } : {}) })
}

async function responseJson(response) {
  const headers = {}
  response.headers.forEach((value, key) => {
    headers[key] = value
  })
  const text = response.status === 204 || response.body === null ? '' : await response.text()
  let body = text === '' ? null : text
  if (text !== '') {
    try {
      body = JSON.parse(text)
    } catch {}
  }
  const out = { status: response.status, headers, body }
  if (headers['www-authenticate']) {
    out.wwwAuthenticate = headers['www-authenticate']
    try {
      out.challenges = Challenge.deserializeList(headers['www-authenticate']).map(challengeJson)
    } catch (error) {
      out.challengeError = error.message
    }
  }
  if (headers['payment-receipt']) {
    try {
      out.receipt = toJson(decodeReceipt(headers['payment-receipt']))
    } catch (error) {
      out.receiptError = error.message
    }
  }
  return out
}

async function serve(request) {
  const s = getServer()
  let result
  try {
    result = await s.route(request)
  } catch (error) {
    throw new BridgeError('internal', `mppx route threw: ${error?.stack ?? error}`)
  }
  if (result.status === 402) return responseJson(result.challenge)
  const content = new Response(JSON.stringify({ served: true }), {
    status: 200,
    headers: { 'content-type': 'application/json' },
  })
  return responseJson(result.withReceipt(content))
}

/** A process restart of the server on the same durable store (Store.memory() stands for the database). */
// The payee settles through mppx's own API on the harness's chain (the rpc callback): mppx reads its stored highest
// voucher, sends the settle transaction, waits for the receipt and records settledOnChain. A settle mppx itself
// refuses (no voucher, an unknown channel, a reverted transaction) answers {settled: false, reason}: a payee's
// settle that did not happen, not an adapter failure.
async function serverSettle(input) {
  if (!HAS_SETTLE) throw unsupported(`mppx ${MPPX_VERSION} exports no tempo.settle (mppx/server)`)
  const channelId = readHex(input, 'channelId', 32).toLowerCase()
  const s = getServer()
  try {
    const txHash = await tempoServer.settle(s.store, s.client, channelId, { account: s.account })
    return { settled: true, txHash }
  } catch (error) {
    return { settled: false, reason: `${error?.name ?? 'Error'}: ${String(error?.message ?? error).split('\n')[0]}` }
  }
}

async function serverRestart() {
  const s = getServer()
  server = makeServer(s.cfg, s.store)
  return {}
}

async function serverChallenge(input) {
  return serve(buildRequest(input, { withAuthorization: false }))
}

async function serverHandle(input) {
  if (input.authorization === undefined) throw invalidInput('missing field "authorization" (use server.challenge for none)')
  return serve(buildRequest(input, { withAuthorization: true }))
}

// ---------------------------------------------------------------------------
// Chain.

async function chainSetChannel(input) {
  const channelId = readHex(input, 'channelId', 32).toLowerCase()
  fakeChain.channels.set(channelId, readChannelState(channelId, field(input, 'state')))
  return {}
}

async function txDecode(input) {
  const raw = readHex(input, 'raw')
  return byMppx('transaction decode', () => describeTransaction(raw))
}

async function chainGetChannel(input) {
  const channelId = readHex(input, 'channelId', 32).toLowerCase()
  const state = fakeChain.channels.get(channelId)
  return state ? toJson(state) : null
}

// ---------------------------------------------------------------------------
// Dispatch.

const UNSUPPORTED = {
  'voucher.digest[v1]': `mppx ${MPPX_VERSION} exports no v1 voucher digest`,
  'server[v1]': `the adapter drives only mppx's v2 session server (tempo.session, TIP-1034)`,
  'client.fetch[chain]':
    "mppx's chain reads and transactions go through the harness's rpc callback when the request offers it, " +
    "else they are answered by the adapter's fake chain (result field chainSource says which)",
  ...(HAS_V2 ? {} : { v2: `mppx ${MPPX_VERSION} is v1 only: no v2 vouchers, snapshots, client or server` }),
}

// Ops this release can answer (the rest answer `unsupported` and are left out of hello's capabilities).
const V2_OPS = ['snapshot.parse', 'snapshot.format', 'client.next_credential', 'server.configure',
  'server.seed_channel', 'server.challenge', 'server.handle', 'server.record', 'server.restart', 'server.settle',
  'chain.set_channel', 'chain.get_channel']
function listed(op) {
  if (op === 'client.fetch') return HAS_FETCH_CLIENT || HAS_V1_FETCH_CLIENT
  if (op === 'server.seed_channel') return HAS_V2_SERVER
  if (op === 'server.settle') return HAS_SETTLE
  if (op.startsWith('server.')) return HAS_SERVER
  if (V2_OPS.includes(op)) return HAS_V2
  return true
}

// The JSON-lines plumbing (hello, reset, errors, callbacks, the loop) is the adapter kit's (../bridge/js/kit.mjs).
const adapter = createAdapter({
  name: 'mppx',
  version: MPPX_VERSION,
  callbacks: ['http', 'rpc'],
  notes: UNSUPPORTED,
  capabilities: listed,
  helloExtra: { sessions: SESSIONS, ...(V1_CHANNEL_FIELDS ? { v1ChannelFields: V1_CHANNEL_FIELDS } : {}) },
})
adapter.onReset(() => {
  server = null
  fetchClients.clear()
  fakeChain.channels.clear()
  fakeChain.receipts.clear()
  fakeChain.rpcLog.length = 0
})

const OPS = {
  'voucher.sign': voucherSign,
  'voucher.verify': voucherVerify,
  'voucher.digest': voucherDigest,
  'challenge.parse': challengeParse,
  'challenge.format': challengeFormat,
  'credential.parse': credentialParse,
  'credential.format': credentialFormat,
  'receipt.parse': receiptParse,
  'receipt.format': receiptFormat,
  'snapshot.parse': snapshotParse,
  'snapshot.format': snapshotFormat,
  'client.next_credential': clientNextCredential,
  'client.fetch': clientFetch,
  'server.configure': serverConfigure,
  'server.seed_channel': serverSeedChannel,
  'server.challenge': serverChallenge,
  'server.handle': serverHandle,
  'server.record': serverRecord,
  'server.restart': serverRestart,
  'server.settle': serverSettle,
  'chain.set_channel': chainSetChannel,
  'chain.get_channel': chainGetChannel,
  'tx.decode': txDecode,
  // Test hooks for the harness's own crash/timeout handling; harmless otherwise.
  'debug.exit': async (input) => process.exit(Number(input?.code ?? 3)),
  'debug.sleep': async (input) => new Promise((r) => setTimeout(() => r({}), Number(input?.ms ?? 1000))),
}

for (const [op, fn] of Object.entries(OPS)) adapter.op(op, fn)
adapter.run()
