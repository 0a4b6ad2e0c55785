// The anchor of `make bench` (adapters/reference/bench.py bench_mppx_server): mppx's session server
// (Mppx.create + tempo.session, Store.memory(), the adapter's fake chain) driven in this one Node process
// with the reference server's bench workload: one payer, one channel, one v2 voucher per paid request
// (cumulative += price), signed in the loop (client signing included, as in the Python figure).
//
//   node adapters/mppx/bench-server.mjs [seconds] [reuse|fresh]
//
// adapter.mjs is loaded in process with its JSON-lines protocol fed from here (no second process, no
// pipe): each op is a function call plus one JSON encode/decode. `reuse`: every credential echoes the
// first challenge (one round trip, like the reference client's reuse_challenge); `fresh`: a
// server.challenge before each paid request (the 402 flow). Prints one JSON line on the real stdout.
import { PassThrough } from 'node:stream'
import * as MppxRoot from 'mppx'

const seconds = Number(process.argv[2] ?? 3)
const mode = process.argv[3] ?? 'reuse'
const { Challenge, Credential } = MppxRoot

const feed = new PassThrough()
Object.defineProperty(process, 'stdin', { value: feed, configurable: true })
const realWrite = process.stdout.write.bind(process.stdout)
const waiting = new Map()
let buffered = ''
process.stdout.write = (chunk) => {
  buffered += chunk.toString()
  for (let i = buffered.indexOf('\n'); i >= 0; i = buffered.indexOf('\n')) {
    const message = JSON.parse(buffered.slice(0, i))
    buffered = buffered.slice(i + 1)
    const settle = waiting.get(message.id)
    if (settle) {
      waiting.delete(message.id)
      settle(message)
    }
  }
  return true
}
let nextId = 1
function call(op, input = {}) {
  return new Promise((resolve, reject) => {
    const id = nextId++
    waiting.set(id, (m) => (m.ok ? resolve(m.value) : reject(new Error(`${op}: ${m.error.type}: ${m.error.message}`))))
    feed.write(`${JSON.stringify({ id, op, input })}\n`)
  })
}

await import('./adapter.mjs')

const cfg = await call('server.configure', {})
const payerKey = `0x${'11'.repeat(32)}`
const { channelId, descriptor } = await call('server.seed_channel', { payerPrivateKey: payerKey, deposit: (10n ** 15n).toString() })
const price = BigInt(cfg.amount)
const held = (await call('server.challenge', { channelId })).wwwAuthenticate
let cumulative = 0n
let served = 0
const start = performance.now()
while (performance.now() - start < seconds * 1000) {
  cumulative += price
  const amount = cumulative.toString()
  const { signature } = await call('voucher.sign', {
    version: 'v2', chainId: cfg.chainId, verifyingContract: cfg.escrowContract, channelId, cumulativeAmount: amount,
    privateKey: payerKey,
  })
  const header = mode === 'reuse' ? held : (await call('server.challenge', { channelId })).wwwAuthenticate
  const challenge = Challenge.deserializeList(header)[0]
  const authorization = Credential.serialize(Credential.from({
    challenge, source: `did:pkh:eip155:${cfg.chainId}:${descriptor.payer}`,
    payload: { action: 'voucher', channelId, cumulativeAmount: amount, signature, descriptor },
  }))
  const answer = await call('server.handle', { authorization, channelId })
  if (answer.status !== 200) {
    realWrite(`${JSON.stringify({ error: `status ${answer.status}`, body: answer.body, served })}\n`)
    process.exit(1)
  }
  served += 1
}
const elapsed = (performance.now() - start) / 1000
realWrite(`${JSON.stringify({ mode, served, seconds: elapsed, rate: served / elapsed })}\n`)
process.exit(0)
