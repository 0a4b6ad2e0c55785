// A complete adapter in about 50 lines (PROTOCOL.md section 9): mppx's v2 vouchers and header codecs behind the
// kit. Run by the harness as `node adapter.mjs` (manifest.json beside it); mppx resolves from ../node_modules.
import { Challenge, Credential } from 'mppx'
import { Session } from 'mppx/tempo'
import { createClient, custom, hashTypedData } from 'viem'
import { privateKeyToAccount } from 'viem/accounts'
import { createAdapter, readAddress, readAmount, readHex, readInteger, readString, rejected, unsupported } from '../../bridge/js/kit.mjs'

const { Voucher } = Session.Precompile
const adapter = createAdapter({ name: 'mppx-example', version: '0.11.0' })
// signVoucher only asks its client for typed-data signing, which the local account does: no chain is reached.
const offline = createClient({ transport: custom({ request: async () => { throw new Error('offline') } }) })

function voucher(input) {
  if (readString(input, 'version') !== 'v2') throw unsupported('the example speaks v2 vouchers only')
  return {
    chainId: readInteger(input, 'chainId'),
    escrow: readAddress(input, 'verifyingContract'),
    message: { channelId: readHex(input, 'channelId', 32), cumulativeAmount: readAmount(input, 'cumulativeAmount') },
  }
}

async function byMppx(what, fn) {
  try {
    return await fn()
  } catch (error) {
    throw rejected(`${what}: ${error?.message ?? error}`) // mppx refused the input
  }
}

adapter.op('voucher.sign', async (input) => {
  const { chainId, escrow, message } = voucher(input)
  const account = privateKeyToAccount(readHex(input, 'privateKey', 32))
  const signature = await byMppx('signVoucher', () => Voucher.signVoucher(offline, account, message, escrow, chainId))
  return { signature: signature.toLowerCase() }
})
adapter.op('voucher.verify', async (input) => {
  const { chainId, escrow, message } = voucher(input)
  const signed = { ...message, signature: readHex(input, 'signature') }
  return { valid: (await byMppx('verifyVoucher', () => Voucher.verifyVoucher(escrow, chainId, signed, readAddress(input, 'signer')))) === true }
})
adapter.op('voucher.digest', async (input) => {
  const { chainId, escrow, message } = voucher(input)
  const domain = Voucher.getVoucherDomain(escrow, chainId)
  return { digest: hashTypedData({ domain, types: Voucher.voucherTypes, primaryType: 'Voucher', message }) }
})
adapter.op('challenge.parse', async (input) =>
  byMppx('Challenge.deserializeList', () => Challenge.deserializeList(readString(input, 'header'))))
adapter.op('credential.parse', async (input) =>
  byMppx('Credential.deserialize', () => Credential.deserialize(readString(input, 'header'))))
adapter.run()
