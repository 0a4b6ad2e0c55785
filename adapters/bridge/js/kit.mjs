// The adapter kit for JavaScript: the JSON-lines plumbing of ../PROTOCOL.md, so an adapter is only its operations.
//
//   import { createAdapter, rejected, readAmount } from '../bridge/js/kit.mjs'
//   const adapter = createAdapter({ name: 'my-sdk', version: '1.2.3' })
//   adapter.op('voucher.sign', async (input) => ({ signature: await sign(readAmount(input, 'cumulativeAmount')) }))
//   adapter.run()
//
// What the kit does, so an adapter does not: the read-dispatch-answer loop (one op at a time, in order); `hello`
// (name, version, protocol 2, the registered ops as capabilities, callback kinds, notes) and `reset` (the
// `onReset` functions); the error types (throw `rejected(...)`, `unsupported(...)`, `invalidInput(...)`; anything
// else is answered `internal` with its stack); a request that is not JSON; an unknown op; stdout kept for answers
// (console.log/info/warn go to stderr); callbacks (`callHarness(kind, request)`, and `harnessFetch`, a WHATWG fetch
// carried by the `http` callback), including the harness's nested requests while a callback is outstanding.
// Node built-ins only.
import readline from 'node:readline'

export class BridgeError extends Error {
  constructor(type, message) {
    super(message)
    this.type = type
  }
}
export const invalidInput = (message) => new BridgeError('invalid-input', message)
export const unsupported = (message) => new BridgeError('unsupported', message)
export const rejected = (message) => new BridgeError('rejected', message)

/** The harness answered a callback with ok: false (type: unsupported | network | rejected | invalid-input | internal). */
export class CallbackError extends Error {
  constructor(type, message) {
    super(message)
    this.type = type
  }
}

// ---------------------------------------------------------------------------
// Input readers (PROTOCOL.md section 3: amounts are decimal strings, hex is 0x-prefixed).

export function field(input, key, { optional = false } = {}) {
  const value = input?.[key]
  if (value === undefined || value === null) {
    if (optional) return undefined
    throw invalidInput(`missing field "${key}"`)
  }
  return value
}

export function readString(input, key, options) {
  const value = field(input, key, options)
  if (value === undefined) return undefined
  if (typeof value !== 'string') throw invalidInput(`"${key}" must be a string`)
  return value
}

export function readAmount(input, key, options) {
  const value = field(input, key, options)
  if (value === undefined) return undefined
  if (typeof value !== 'string' || !/^[0-9]+$/.test(value))
    throw invalidInput(`"${key}" must be a decimal string of digits, got ${JSON.stringify(value)}`)
  return BigInt(value)
}

export function readInteger(input, key, options) {
  const value = field(input, key, options)
  if (value === undefined) return undefined
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < 0)
    throw invalidInput(`"${key}" must be a non-negative JSON integer`)
  return value
}

export function readHex(input, key, bytes, options) {
  const value = field(input, key, options)
  if (value === undefined) return undefined
  const pattern = bytes === undefined ? /^0x([0-9a-fA-F]{2})*$/ : new RegExp(`^0x[0-9a-fA-F]{${bytes * 2}}$`)
  if (typeof value !== 'string' || !pattern.test(value))
    throw invalidInput(`"${key}" must be 0x-hex${bytes === undefined ? '' : ` of ${bytes} bytes`}`)
  return value
}

export function readAddress(input, key, options) {
  return readHex(input, key, 20, options)
}

/** JSON out: bigints become decimal strings, undefined fields disappear. */
export function toJson(value) {
  return JSON.parse(JSON.stringify(value, (_k, v) => (typeof v === 'bigint' ? v.toString() : v)))
}

// ---------------------------------------------------------------------------
// The process: one adapter per process.

function write(message) {
  process.stdout.write(`${JSON.stringify(message)}\n`)
}

let offeredCallbacks = new Set()
let nextCallback = 0
const pendingCallbacks = new Map() // callback number -> {resolve, reject}

/** Ask the harness (PROTOCOL.md section 8); resolves with the callback's value, rejects with CallbackError. */
export function callHarness(kind, request, { offeredOnly = true } = {}) {
  if (offeredOnly && !offeredCallbacks.has(kind)) throw unsupported(`the harness offers no ${kind} callback for this op`)
  nextCallback += 1
  const number = nextCallback
  return new Promise((resolve, reject) => {
    pendingCallbacks.set(number, { resolve, reject })
    write({ callback: number, kind, request })
  })
}

/** Whether the op running now was offered a callback kind. */
export const offered = (kind) => offeredCallbacks.has(kind)

/** A WHATWG fetch whose every request the harness answers (its network, faults and the server under test).
 *  A fault of the harness's network rejects like any failed fetch (a TypeError, as undici's). */
export async function harnessFetch(input, init) {
  const request = new Request(input, init)
  const headers = {}
  request.headers.forEach((value, key) => {
    headers[key] = value
  })
  const body = request.method === 'GET' || request.method === 'HEAD' ? null : await request.text()
  let reply
  try {
    reply = await callHarness('http', { method: request.method, url: request.url, headers, body: body === '' ? null : body })
  } catch (error) {
    if (error instanceof CallbackError && error.type === 'network') throw new TypeError(`fetch failed: ${error.message}`)
    throw error
  }
  const status = Number(reply?.status)
  if (!Number.isInteger(status) || status < 100 || status > 599) throw invalidInput(`http callback answered status ${reply?.status}`)
  const noBody = status === 204 || status === 304 || request.method === 'HEAD'
  return new Response(noBody || reply.body === null || reply.body === undefined ? null : String(reply.body), {
    status,
    headers: reply.headers ?? {},
  })
}

function settleCallback(message) {
  const pending = pendingCallbacks.get(message.callback)
  if (!pending) return // an answer to a callback nobody waits for (e.g. after a timeout): ignore
  pendingCallbacks.delete(message.callback)
  if (message.ok === true) pending.resolve(message.value)
  else pending.reject(new CallbackError(message.error?.type ?? 'internal', message.error?.message ?? 'callback failed'))
}

/**
 * createAdapter({name, version, callbacks?, notes?, capabilities?, helloExtra?}) -> {op, onReset, run}
 * `capabilities` (optional) filters which registered ops hello lists (e.g. by feature detection of a release);
 * `helloExtra` (optional) adds fields of the adapter's own to hello's answer.
 */
export function createAdapter({ name, version, callbacks = [], notes, capabilities, helloExtra } = {}) {
  const ops = new Map()
  const resets = []
  const hello = async () => {
    const listed = [...ops.keys()].filter((op) => (capabilities ? capabilities(op) : true))
    const value = { name, version, protocol: 2, capabilities: listed }
    if (callbacks.length) value.callbacks = callbacks
    if (notes && Object.keys(notes).length) value.notes = notes
    return helloExtra ? { ...value, ...helloExtra } : value
  }
  const reset = async () => {
    for (const fn of resets) await fn()
    return {}
  }

  async function handleLine(line, { nested = false } = {}) {
    if (line.trim() === '') return
    let request
    try {
      request = JSON.parse(line)
    } catch (error) {
      write({ id: null, ok: false, error: { type: 'invalid-input', message: `request is not JSON: ${error.message}` } })
      return
    }
    const id = request?.id ?? null
    const op = request?.op
    // A nested op (sent by the harness while answering one of our callbacks) offers none and keeps the outer op's.
    if (!nested) offeredCallbacks = new Set(Array.isArray(request?.callbacks) ? request.callbacks : [])
    const fn = op === 'hello' ? hello : op === 'reset' ? reset : typeof op === 'string' ? ops.get(op) : undefined
    if (!fn) {
      write({ id, ok: false, error: { type: 'unsupported', message: `${name} adapter has no op ${JSON.stringify(op)}` } })
      return
    }
    try {
      const value = await fn(request.input ?? {})
      write({ id, ok: true, value: value === undefined ? null : toJson(value) })
    } catch (error) {
      if (error instanceof BridgeError) write({ id, ok: false, error: { type: error.type, message: error.message } })
      else write({ id, ok: false, error: { type: 'internal', message: `${op}: ${error?.stack ?? String(error)}` } })
    }
  }

  return {
    op(opName, fn) {
      if (opName === 'hello' || opName === 'reset' || ops.has(opName)) throw new Error(`op ${opName} is the kit's or registered twice`)
      ops.set(opName, fn)
      return fn
    },
    onReset(fn) {
      resets.push(fn)
    },
    run() {
      // Libraries log with console.*: keep stdout for the protocol only.
      console.log = (...args) => process.stderr.write(`${args.map(String).join(' ')}\n`)
      console.info = console.log
      console.warn = console.log
      const rl = readline.createInterface({ input: process.stdin, crlfDelay: Number.POSITIVE_INFINITY })
      let queue = Promise.resolve()
      rl.on('line', (line) => {
        // Answers to our callbacks arrive while an op is still running: settle them at once, never queue them.
        if (line.includes('"callback"')) {
          let message
          try {
            message = JSON.parse(line)
          } catch {}
          if (message && typeof message === 'object' && 'callback' in message && !('op' in message)) {
            settleCallback(message)
            return
          }
        }
        // While an op waits on a callback, the harness may send other ops before answering: run those at once.
        if (pendingCallbacks.size > 0) {
          handleLine(line, { nested: true })
          return
        }
        queue = queue.then(() => handleLine(line))
      })
      rl.on('close', () => {
        queue.then(() => process.exit(0))
      })
    },
  }
}
