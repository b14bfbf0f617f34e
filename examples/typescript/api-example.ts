/**
 * fcfs API from TypeScript: promise calls, then a batch of reads in flight
 * with the callback interface, then an invalid LBA.
 *
 *   npm run build && node dist/examples/typescript/api-example.js <mountpoint or socket> [wwpn]
 */
import { FcfsClient, ApiRequestError } from '../../src/api/client.js'
import { statusName } from '../../src/api/protocol.js'

async function main(): Promise<number> {
  const where = process.argv[2]
  if (!where) {
    process.stderr.write('usage: api-example <mountpoint|socket> [wwpn]\n')
    return 2
  }
  const c = await FcfsClient.connect(where)
  try {
    console.log(`connected to ${c.socketPath}: protocol ${c.hello.protocol}, server pid ${c.hello.serverPid}`)
    const t = await c.open(process.argv[3] ?? '21000024ff000001', 0)
    console.log(`opened ${t.wwpn}: handle 0x${t.handle.toString(16).padStart(8, '0')}, ${t.blocks} blocks of ${t.blockSize} bytes`)

    const data = Buffer.alloc(65536)
    for (let i = 0; i < data.length; i++) data[i] = (i * 17 + 1) & 0xff
    await c.write(t, 0, data)
    const back = await c.read(t, 0, data.length / t.blockSize)
    console.log(`WRITE/READ 64 KiB inline: ${back.equals(data) ? 'same bytes' : 'MISMATCH'}`)

    const n = 1000
    const t0 = performance.now()
    const good = await new Promise<number>((resolve) => {
      let done = 0
      let ok = 0
      for (let i = 0; i < n; i++) {
        c.submit({ target: t, read: true, lba: i % 128, blocks: 1 }, (r) => {
          if (r.ok) ok++
          if (++done === n) resolve(ok)
        })
      }
    })
    console.log(`${n} reads in flight: ${good} GOOD in ${(performance.now() - t0).toFixed(1)} ms`)

    try {
      await c.read(t, t.blocks, 1)
    } catch (e) {
      if (!(e instanceof ApiRequestError)) throw e
      console.log(`READ past the end: ${statusName(e.status)}`)
    }
    return back.equals(data) && good === n ? 0 : 1
  } finally {
    await c.close()
  }
}

main().then(
  (code) => process.exit(code),
  (err) => {
    process.stderr.write(`api-example: ${(err as Error).message}\n`)
    process.exit(1)
  },
)
