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
import { spawn } from 'node:child_process'
import readline from 'node:readline'
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

async function observe(result, management = false) {
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
  // Rule C1: a management answer (a voucher on HEAD) is any 2xx with its receipt.
  const status = management && resp.status >= 200 && resp.status < 300 ? 200 : resp.status
  return { status, receipt: { channelId: r.channelId, acceptedCumulative: num(r.acceptedCumulative), spent: num(r.spent) } }
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

// ---------------------------------------------------------------------------- v2-wire: through the mppx adapter
//
// The v2-wire set opens, tops up and closes over the wire with Tempo 0x76 transactions; mppx's server then
// broadcasts them and reads the chain. The mppx adapter (adapters/mppx/adapter.mjs, PROTOCOL.md) already has
// the fake chain that applies them, so these cases run through it, one JSON-lines request at a time.

class AdapterProcess {
  constructor(dir) {
    this.proc = spawn(process.execPath, ['adapter.mjs'], { cwd: dir, stdio: ['pipe', 'pipe', 'pipe'] })
    this.waiting = new Map()
    this.next = 1
    this.stderr = ''
    this.onCallback = null // (kind, request) -> value: answers the adapter's callbacks (PROTOCOL.md section 8)
    this.proc.stderr.on('data', (d) => { this.stderr = (this.stderr + d).slice(-4000) })
    readline.createInterface({ input: this.proc.stdout }).on('line', (line) => {
      let answer
      try { answer = JSON.parse(line) } catch { return }
      if (answer.callback !== undefined && answer.id === undefined) {
        Promise.resolve()
          .then(() => this.onCallback(answer.kind, answer.request))
          .then((value) => ({ callback: answer.callback, ok: true, value }),
            (error) => ({ callback: answer.callback, ok: false, error: { type: 'internal', message: String(error?.stack ?? error) } }))
          .then((reply) => this.proc.stdin.write(JSON.stringify(reply) + '\n'))
        return
      }
      const w = this.waiting.get(answer.id)
      if (!w) return
      this.waiting.delete(answer.id)
      if (answer.ok) w.resolve(answer.value)
      else w.reject(new Error(`${answer.error.type}: ${answer.error.message}`))
    })
    this.proc.on('exit', (code) => {
      for (const w of this.waiting.values()) w.reject(new Error(`adapter exited (${code}): ${this.stderr}`))
      this.waiting.clear()
    })
  }

  call(op, input = {}, callbacks = undefined) {
    const id = this.next++
    return new Promise((resolve, reject) => {
      this.waiting.set(id, { resolve, reject })
      this.proc.stdin.write(JSON.stringify({ id, op, input, ...(callbacks ? { callbacks } : {}) }) + '\n')
    })
  }

  close() { this.proc.stdin.end() }
}

// What mppx cannot be asked, by op: the case is reported as "unsupported" with the reason, never passed.
const WIRE_UNSUPPORTED = {
  switch_server: "mppx's server has no legacy (unhinted) mode to route part of a fleet to",
  settle: "the adapter has no op for mppx's own settlement; settling behind its back on the fake chain would " +
    "leave its store's settledOnChain stale and test the simulation, not mppx",
}

function wireObserve(resp, management) {
  // Rule C1: a management answer (topUp, close, a voucher on HEAD) is any 2xx with its receipt.
  const served = resp.status === 200 || (management && resp.status >= 200 && resp.status < 300)
  if (served && resp.headers['payment-receipt']) {
    const r = Receipt.deserialize(resp.headers['payment-receipt'])
    return { status: 200, receipt: { channelId: r.channelId, acceptedCumulative: num(r.acceptedCumulative), spent: num(r.spent) } }
  }
  const out = { status: resp.status }
  const body = resp.body && typeof resp.body === 'object' ? resp.body : {}
  out.problem = typeof body.type === 'string' ? body.type.split('/').at(-1) : `http-${resp.status}`
  if (body.requiredTopUp !== undefined) out.requiredTopUp = num(body.requiredTopUp)
  out.challenge = Boolean(resp.wwwAuthenticate)
  if (resp.wwwAuthenticate) out.hints = hintsOf(resp.wwwAuthenticate)
  return out
}

async function runWireCase(adapter, doc) {
  const dep = doc.deployment
  const unsupported = doc.steps.find((s) => WIRE_UNSUPPORTED[s.op]) ?? (dep.hinted ? null : { op: 'hinted' })
  if (unsupported) return { unsupported: WIRE_UNSUPPORTED[unsupported.op] ?? "mppx's server always hints (no legacy mode)" }
  await adapter.call('reset')
  await adapter.call('server.configure', {
    realm: 'vectors.test', secretKey: 'vectors-secret-key-0123456789abcdef', payeePrivateKey: dep.keys.payee,
    currency: dep.token, chainId: dep.chainId, escrowContract: dep.escrow, amount: String(dep.price),
    expires: '2099-01-01T00:00:00.000Z',
  })
  let channel = null // the case's channel, named to mppx with Payment-Session (its hint resolution)
  const steps = []
  for (const step of doc.steps) {
    const req = step.request
    let got
    const management = step.op === 'topUp' || step.op === 'close' || req?.method === 'HEAD'
    const named = channel ?? step.after?.channelId ?? null
    const base = { method: req?.method, path: req?.path, ...(named ? { channelId: named } : {}) }
    if (step.op === 'challenge') {
      got = wireObserve(await adapter.call('server.challenge', base), false)
    } else if (['open', 'voucher', 'topUp', 'close'].includes(step.op)) {
      const fresh = await adapter.call('server.challenge', base)
      const [challenge] = Challenge.deserializeList(fresh.wwwAuthenticate)
      const authorization = Credential.serialize(Credential.from({
        challenge, source: step.credential.source, payload: step.credential.payload,
      }))
      const key = req.headers['Idempotency-Key']
      const resp = await adapter.call('server.handle', { ...base, authorization, ...(key ? { idempotencyKey: key } : {}) })
      got = wireObserve(resp, management)
    } else if (step.op === 'restart_server') {
      await adapter.call('server.restart')
    } else if (['request_close', 'withdraw', 'advance_time'].includes(step.op)) {
      // The payer's chain calls are the environment, not the implementation under test: apply the step's
      // effect to the adapter's fake chain (its clock is not modelled: advance_time changes nothing there).
      const state = await adapter.call('chain.get_channel', { channelId: step.channelId })
      if (state && step.op === 'request_close') state.closeRequestedAt = '1'
      if (state && step.op === 'withdraw' && !step.reverted) state.finalized = true
      if (state) await adapter.call('chain.set_channel', { channelId: step.channelId, state })
    } else {
      throw new Error(`${doc.caseId} step ${step.n}: op ${step.op} is not in the v2-wire set`)
    }
    const mismatches = got === undefined ? [] : diff(step.expect, got)
    if (step.after?.channelId) channel = step.after.channelId
    const rec = channel ? await adapter.call('server.record', { channelId: channel }) : null
    const after = rec ? { channelId: rec.channelId, acceptedCumulative: num(rec.acceptedCumulative), spent: num(rec.spent) } : null
    mismatches.push(...diff(step.after, after, 'after.'))
    steps.push({ n: step.n, op: step.op, rules: step.rules, mismatches })
  }
  return { steps }
}

// ---------------------------------------------------------------------------- client-v2: mppx's client
//
// A client case (vectors/README.md "client"): mppx's fetch client (bridge op client.fetch, a fresh install: empty
// channel store) makes the case's GETs; every HTTP request it makes comes back as an http callback, answered from
// the case's recorded exchanges while its credentials match them (as conformance.vectors.replay_client does);
// its chain reads are answered by the adapter's fake chain, set to the case's chainState.

async function credentialSummary(adapter, authorization) {
  if (!authorization) return null
  const p = Credential.deserialize(authorization).payload
  const out = { action: p.action }
  if (p.action !== 'open') out.channelId = p.channelId
  if (p.cumulativeAmount !== undefined) out.cumulativeAmount = Number(p.cumulativeAmount)
  if (p.action === 'open') {
    const decoded = await adapter.call('tx.decode', { raw: p.transaction })
    out.deposit = Number(decoded.calls.at(-1).args[3])
  }
  if (p.action === 'topUp') out.additionalDeposit = Number(p.additionalDeposit)
  return out
}

const sameSummary = (a, b) => JSON.stringify(lowerStrings(a)) === JSON.stringify(lowerStrings(b))

async function runClientCase(adapter, doc) {
  if (!doc.deployment.client.hinted) return { unsupported: "mppx's client has no legacy (hint-ignoring) mode" }
  await adapter.call('reset')
  for (const [channelId, st] of Object.entries(doc.chainState)) {
    const state = { ...st, deposit: String(st.deposit), settled: String(st.settled) }
    await adapter.call('chain.set_channel', { channelId, state })
  }
  const exchanges = doc.exchanges
  let n = 0
  const sent = [], stray = [], outcomes = []
  adapter.onCallback = async (kind, request) => {
    if (kind !== 'http') throw new Error(`callback ${kind} is not offered`)
    const summary = await credentialSummary(adapter, request.headers.authorization)
    const answer = (r) => ({ status: r.status, headers: r.headers, body: r.body })
    if (summary === null) {
      if (n < exchanges.length && exchanges[n].request.credential === null && exchanges[n].request.method === request.method)
        return answer(exchanges[n++].response)
      const given = exchanges.slice(0, n).filter((x) => x.response.headers['www-authenticate'])
      if (!given.length) { stray.push({ method: request.method, credential: null }); return { status: 503, headers: {}, body: 'vector: no recorded challenge yet' } }
      return answer(given.at(-1).response)
    }
    sent.push(summary)
    let at = n
    while (at < exchanges.length && exchanges[at].request.credential === null) at++
    const want = exchanges[at]
    const management = summary.action === 'topUp' || summary.action === 'close'
    if (!want || !sameSummary(want.request.credential, summary) || (!management && want.request.method !== request.method)) {
      stray.push({ method: request.method, credential: summary })
      return { status: 503, headers: {}, body: 'vector: no recorded answer to this request' }
    }
    n = at + 1
    if (summary.action === 'topUp' && want.response.status === 200) { // the server would broadcast it
      const st = await adapter.call('chain.get_channel', { channelId: summary.channelId })
      st.deposit = String(BigInt(st.deposit) + BigInt(summary.additionalDeposit))
      await adapter.call('chain.set_channel', { channelId: summary.channelId, state: st })
    }
    return answer(want.response)
  }
  const c = doc.deployment.client
  for (let i = 0; i < doc.request.times; i++) {
    // As the harness configures mppx's client (conformance/mppx_impl.py): the payer's wallet bounds what it may
    // authorize in total, it tops up by the case's topUp, and it takes no escrow but its default.
    const out = await adapter.call('client.fetch', {
      privateKey: doc.deployment.keys.payer, url: origin + doc.request.path, method: doc.request.method,
      allowCustomEscrow: false, maxDeposit: String(Math.max(doc.deployment.wallet, c.deposit)),
      topUpAmount: String(c.topUp),
      ...(i === 0 ? { store: [] } : {}),
    }, ['http'])
    outcomes.push(out.thrown ? `threw ${out.thrown.name}: ${out.thrown.message}`.slice(0, 300) : `answered ${out.response.status}`)
  }
  adapter.onCallback = null
  const got = { signed: sent, ...(stray.length ? { stray } : {}) }
  return { steps: [{ n: 1, op: 'client', rules: doc.rules, outcomes,
    mismatches: diff({ signed: doc.expect.signed }, got) }] }
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
      got = await observe(await route(new Request(origin + req.path, { method: req.method, headers })), req.method === 'HEAD')
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
const adapter = new AdapterProcess(path.join(HERE, '..', 'adapters', 'mppx'))
const entries = ['v2', 'v2-wire', 'client-v2'].flatMap((set) => (index.sets[set] ?? []).map((e) => ({ ...e, set })))
for (const entry of entries) {
  const doc = JSON.parse(readFileSync(path.join(VECTORS, entry.file), 'utf8'))
  let steps, outcome
  try {
    if (entry.set === 'v2') steps = await runCase(doc)
    else {
      const run = entry.set === 'client-v2' ? await runClientCase(adapter, doc) : await runWireCase(adapter, doc)
      if (run.unsupported) {
        results.push({ caseId: doc.caseId, set: entry.set, rules: doc.rules, verdict: 'unsupported', reason: run.unsupported,
          findings: [], unexpected: [], covered: [], stale: [] })
        console.log(`unsup ${doc.caseId}: ${run.unsupported}`)
        continue
      }
      steps = run.steps
    }
    outcome = classify(steps, expectations[doc.caseId])
  } catch (error) {
    steps = []
    outcome = { verdict: 'FAIL', findings: [], unexpected: [{ error: String(error?.stack ?? error) }], covered: [], stale: [] }
  }
  results.push({ caseId: doc.caseId, set: entry.set, rules: doc.rules, ...outcome,
    ...(steps[0]?.outcomes ? { outcomes: steps[0].outcomes } : {}) })
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
adapter.close()
const ms = Number(process.hrtime.bigint() - started) / 1e6
console.log('\nper rule (steps): ' + Object.entries(perRule).sort().map(([r, c]) => `${r} ${c.pass}/${c.xfail}/${c.fail}`).join(', ') + '  (pass/xfail/fail)')
const count = (v) => results.filter((r) => r.verdict === v).length
console.log(`mppx ${MPPX_VERSION}: ${results.length} cases (v2, v2-wire, client-v2), ${count('pass')} pass, ` +
  `${count('xfail')} expected failures, ${count('FAIL')} unexpected failures, ${count('XPASS')} unexpected passes, ` +
  `${count('unsupported')} unsupported, ${ms.toFixed(0)} ms`)
if (JSON_OUT) writeFileSync(JSON_OUT, JSON.stringify({ mppx: MPPX_VERSION, ms, results, perRule }, null, 1) + '\n')
process.exit(count('FAIL') || count('XPASS') ? 1 : 0)
