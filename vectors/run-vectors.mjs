#!/usr/bin/env node
// Runs the v2 test vectors (vectors/README.md) against mppx@0.11.0's session server, in process.
//
//   node vectors/run-vectors.mjs [--vectors DIR] [--expectations FILE] [--json OUT]
//
// Plain Node >= 20, no dependency of its own: mppx (and the viem it ships with) are
// imported from the pinned install in adapters/mppx/node_modules (`make mppx`).
// Each case gets a fresh Mppx.create({methods: [tempo.session(...)]}) route on
// Store.memory(), seeded with the case's channel, and a tiny fake chain answering
// the one RPC the voucher path needs (eth_call getChannelState). A mismatch listed
// in the expectations file with its FINDINGS.md id is an expected failure; any
// other mismatch, or a listed one that no longer happens, fails the run (exit 1).
import { readFileSync, writeFileSync } from 'node:fs'
import { fileURLToPath, pathToFileURL } from 'node:url'
import path from 'node:path'

const HERE = path.dirname(fileURLToPath(import.meta.url))
const NODE_MODULES = path.join(HERE, '..', 'adapters', 'mppx', 'node_modules')

function arg(name, fallback) {
  const i = process.argv.indexOf(name)
  return i >= 0 ? process.argv[i + 1] : fallback
}
const VECTORS = arg('--vectors', path.join(HERE, 'fixtures'))
const EXPECTATIONS = arg('--expectations', path.join(HERE, 'mppx-expectations.json'))
const JSON_OUT = arg('--json', undefined)

/** Imports `pkg/sub` from the pinned install, following its package.json "exports" (ESM entry). */
async function load(pkg, sub = '.') {
  const dir = path.join(NODE_MODULES, pkg)
  let manifest
  try {
    manifest = JSON.parse(readFileSync(path.join(dir, 'package.json'), 'utf8'))
  } catch {
    console.error(`run-vectors: ${pkg} is not installed in ${NODE_MODULES} (run \`make mppx\`)`)
    process.exit(2)
  }
  const entry = manifest.exports[sub]
  const file = typeof entry === 'string' ? entry : entry.import ?? entry.default
  return { version: manifest.version, mod: await import(pathToFileURL(path.join(dir, file)).href) }
}

const { version: MPPX_VERSION, mod: mppx } = await load('mppx')
const { mod: mppxServer } = await load('mppx', './server')
const { mod: mppxTempo } = await load('mppx', './tempo')
const { mod: viem } = await load('viem')
const { mod: viemAccounts } = await load('viem', './accounts')
const { mod: viemChains } = await load('viem', './chains')
const { Challenge, Credential, Receipt } = mppx
const { Mppx, Store, tempo } = mppxServer
const { escrowAbi } = mppxTempo.Session.Precompile
const { createClient, custom, decodeFunctionData, encodeFunctionResult, formatUnits, numberToHex } = viem

// ---------------------------------------------------------------------------- one deployment

function fakeChainRpc(chainId, channels) {
  return async ({ method, params }) => {
    if (method === 'eth_chainId') return numberToHex(chainId)
    if (method === 'eth_blockNumber') return '0x1'
    if (method === 'eth_call') {
      const decoded = decodeFunctionData({ abi: escrowAbi, data: params[0].data })
      if (decoded.functionName !== 'getChannelState')
        throw new Error(`vector chain: eth_call ${decoded.functionName} is not modelled`)
      const st = channels.get(decoded.args[0].toLowerCase())
      const view = !st || st.finalized
        ? { settled: 0n, deposit: 0n, closeRequestedAt: 0 }
        : { settled: st.settled, deposit: st.deposit, closeRequestedAt: Number(st.closeRequestedAt) }
      return encodeFunctionResult({ abi: escrowAbi, functionName: 'getChannelState', result: view })
    }
    throw new Error(`vector chain: RPC ${method} is not modelled (voucher path only)`)
  }
}

function makeRoute(dep, store, client) {
  const account = viemAccounts.privateKeyToAccount(dep.keys.payee)
  const m = Mppx.create({
    realm: dep.realm,
    secretKey: dep.secretKey,
    methods: [
      tempo.session({
        account,
        currency: dep.currency,
        chainId: dep.chainId,
        escrowContract: dep.escrow,
        getClient: () => client,
        store,
        amount: formatUnits(BigInt(dep.price), dep.decimals),
        unitType: 'request',
        channelStateTtl: 0,
        ...(dep.minVoucherDelta ? { minVoucherDelta: formatUnits(BigInt(dep.minVoucherDelta), dep.decimals) } : {}),
        resolveChannelId: ({ request }) => request?.headers?.get?.('payment-session') ?? null,
      }),
    ],
  })
  return m.session({ expires: dep.expires })
}

async function seed(doc, store, channels) {
  const s = doc.seed
  const d = s.descriptor
  const state = {
    deposit: BigInt(s.deposit),
    settled: BigInt(s.settled),
    closeRequestedAt: BigInt(s.closeRequestedAt),
    finalized: s.finalized,
  }
  channels.set(s.channelId, state)
  const hv = s.highestVoucher
  await store.put(s.channelId, {
    backend: 'precompile', chainId: doc.deployment.chainId, channelId: s.channelId, descriptor: d,
    escrowContract: doc.deployment.escrow, expiringNonceHash: d.expiringNonceHash, operator: d.operator,
    payee: d.payee, payer: d.payer, salt: d.salt, token: d.token, authorizedSigner: d.payer,
    closeRequestedAt: state.closeRequestedAt, deposit: state.deposit, settledOnChain: state.settled,
    highestVoucherAmount: BigInt(hv.cumulativeAmount),
    highestVoucher: { channelId: hv.channelId, cumulativeAmount: BigInt(hv.cumulativeAmount), signature: hv.signature },
    spent: BigInt(s.spent), units: 0, finalized: s.finalized, createdAt: '2000-01-01T00:00:00.000Z',
  })
}

// ---------------------------------------------------------------------------- observing

const num = (v) => (v === undefined || v === null ? undefined : Number(v))

function hintsOf(header) {
  const ch = Challenge.deserializeList(header).find((c) => c.method === 'tempo' && c.intent === 'session')
  const snap = ch?.request?.methodDetails?.sessionSnapshot
  if (!snap) return ch?.request?.methodDetails?.channelId ? { channelId: ch.request.methodDetails.channelId } : null
  const out = {
    channelId: snap.channelId, acceptedCumulative: num(snap.acceptedCumulative), spent: num(snap.spent),
    deposit: num(snap.deposit), settled: num(snap.settled), requiredCumulative: num(snap.requiredCumulative),
    highestVoucher: num(snap.highestVoucher?.cumulativeAmount),
  }
  return Object.fromEntries(Object.entries(out).filter(([, v]) => v !== undefined))
}

async function observe(result) {
  if (result.status === 402 || result.status === 410 || !result.withReceipt) {
    const resp = result.challenge
    const out = { status: resp.status }
    const text = await resp.text()
    let body = {}
    try { body = JSON.parse(text) } catch {}
    out.problem = typeof body.type === 'string' ? body.type.split('/').at(-1) : `http-${resp.status}`
    if (body.requiredTopUp !== undefined) out.requiredTopUp = num(body.requiredTopUp)
    const www = resp.headers.get('www-authenticate')
    out.challenge = Boolean(www)
    if (www) out.hints = hintsOf(www)
    return out
  }
  const resp = result.withReceipt(new Response('content'))
  const r = Receipt.deserialize(resp.headers.get('payment-receipt'))
  return { status: resp.status, receipt: { channelId: r.channelId, acceptedCumulative: num(r.acceptedCumulative), spent: num(r.spent) } }
}

function lowerStrings(v) {
  if (typeof v === 'string') return v.toLowerCase()
  if (Array.isArray(v)) return v.map(lowerStrings)
  if (v && typeof v === 'object') return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, lowerStrings(x)]))
  return v
}

/** The fields where `got` differs from `expected` (dotted paths); addresses compare case-insensitively (F10 aside). */
function diff(expected, got, prefix = '') {
  const out = []
  const keys = new Set([...Object.keys(expected ?? {}), ...Object.keys(got ?? {})])
  for (const k of keys) {
    const e = expected?.[k], g = got?.[k]
    const where = prefix + k
    if (e && g && typeof e === 'object' && typeof g === 'object') out.push(...diff(e, g, where + '.'))
    else if (JSON.stringify(lowerStrings(e ?? null)) !== JSON.stringify(lowerStrings(g ?? null)))
      out.push({ field: where, expected: e ?? null, got: g ?? null })
  }
  return out
}

// ---------------------------------------------------------------------------- running

const origin = 'https://vectors.test'

async function runCase(doc) {
  const dep = doc.deployment
  const channels = new Map()
  const store = Store.memory()
  const client = createClient({
    chain: { ...viemChains.tempo, id: dep.chainId },
    transport: custom({ request: fakeChainRpc(dep.chainId, channels) }, { retryCount: 0 }),
  })
  await seed(doc, store, channels)
  let route = makeRoute(dep, store, client)
  const steps = []
  for (const step of doc.steps) {
    let got
    const req = step.request
    if (step.op === 'challenge') {
      got = await observe(await route(new Request(origin + req.path, { method: req.method, headers: req.headers })))
    } else if (step.op === 'voucher') {
      // Bind the vector's payload to a fresh challenge of this server (its HMAC secret, its clock).
      const fresh = await route(new Request(origin + req.path, { method: req.method, headers: req.headers }))
      const [challenge] = Challenge.deserializeList(fresh.challenge.headers.get('www-authenticate'))
      const authorization = Credential.serialize(Credential.from({
        challenge, source: step.credential.source, payload: step.credential.payload,
      }))
      const headers = { ...req.headers, authorization }
      got = await observe(await route(new Request(origin + req.path, { method: req.method, headers })))
    } else if (step.op === 'chain') {
      const st = channels.get(step.channelId)
      for (const [k, v] of Object.entries(step.set)) st[k] = typeof v === 'number' ? BigInt(v) : v
    } else if (step.op === 'restart_server') {
      route = makeRoute(dep, store, client) // a new process on the same durable store
    } else {
      throw new Error(`${doc.caseId} step ${step.n}: op ${step.op} is not in the v2 set`)
    }
    const mismatches = got === undefined ? [] : diff(step.expect, got)
    const rec = await store.get(step.after.channelId)
    const after = rec ? { channelId: rec.channelId, acceptedCumulative: num(rec.highestVoucherAmount), spent: num(rec.spent) } : null
    mismatches.push(...diff(step.after, after, 'after.'))
    steps.push({ n: step.n, op: step.op, rules: step.rules, mismatches })
  }
  return steps
}

/** Sorts a case's mismatches: each is covered by an expectation {step, fields, finding, why} or unexpected;
 * an expectation no mismatch matches is stale (mppx changed: drop it). */
function classify(steps, expected = []) {
  const unexpected = [], covered = [], stale = []
  const findings = new Set()
  for (const s of steps) {
    for (const m of s.mismatches) {
      const e = expected.find((x) => x.step === s.n && x.fields.includes(m.field))
      if (e) {
        covered.push({ n: s.n, finding: e.finding, ...m })
        findings.add(e.finding)
      } else unexpected.push({ n: s.n, ...m })
    }
  }
  for (const e of expected)
    for (const f of e.fields)
      if (!steps.some((s) => s.n === e.step && s.mismatches.some((m) => m.field === f))) stale.push({ n: e.step, field: f, finding: e.finding })
  const verdict = unexpected.length ? 'FAIL' : stale.length ? 'XPASS' : covered.length ? 'xfail' : 'pass'
  return { verdict, findings: [...findings].sort(), unexpected, covered, stale }
}

const started = process.hrtime.bigint()
const index = JSON.parse(readFileSync(path.join(VECTORS, 'index.json'), 'utf8'))
const expectations = JSON.parse(readFileSync(EXPECTATIONS, 'utf8')).cases
const results = []
const perRule = {}
for (const entry of index.sets.v2) {
  const doc = JSON.parse(readFileSync(path.join(VECTORS, entry.file), 'utf8'))
  let steps, outcome
  try {
    steps = await runCase(doc)
    outcome = classify(steps, expectations[doc.caseId])
  } catch (error) {
    steps = []
    outcome = { verdict: 'FAIL', findings: [], unexpected: [{ error: String(error?.stack ?? error) }], covered: [], stale: [] }
  }
  results.push({ caseId: doc.caseId, rules: doc.rules, ...outcome })
  for (const s of steps) {
    const v = !s.mismatches.length ? 'pass'
      : outcome.unexpected.some((m) => m.n === s.n) ? 'fail' : 'xfail'
    for (const r of s.rules) {
      perRule[r] ??= { pass: 0, xfail: 0, fail: 0 }
      perRule[r][v] += 1
    }
  }
  const why = (expectations[doc.caseId] ?? []).map((e) => `${e.finding} step ${e.step}: ${e.why}`).join('; ')
  console.log(`${outcome.verdict.padEnd(5)} ${doc.caseId}${outcome.findings.length ? ` [${outcome.findings.join(', ')}] ${why}` : ''}`)
  for (const m of outcome.unexpected) console.log(`      unexpected: ${JSON.stringify(m)}`)
  for (const m of outcome.stale) console.log(`      listed but not seen (drop it from the expectations): ${JSON.stringify(m)}`)
}
const ms = Number(process.hrtime.bigint() - started) / 1e6
console.log('\nper rule (steps): ' + Object.entries(perRule).sort().map(([r, c]) => `${r} ${c.pass}/${c.xfail}/${c.fail}`).join(', ') + '  (pass/xfail/fail)')
const count = (v) => results.filter((r) => r.verdict === v).length
console.log(`mppx ${MPPX_VERSION}: ${results.length} v2 cases, ${count('pass')} pass, ${count('xfail')} expected failures, ` +
  `${count('FAIL')} unexpected failures, ${count('XPASS')} unexpected passes, ${ms.toFixed(0)} ms`)
if (JSON_OUT) writeFileSync(JSON_OUT, JSON.stringify({ mppx: MPPX_VERSION, ms, results, perRule }, null, 1) + '\n')
process.exit(count('FAIL') || count('XPASS') ? 1 : 0)
