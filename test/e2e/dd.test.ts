// The everyday tools: dd (buffered and O_DIRECT), cat, cmp, fio write data and read it
// back, compared byte for byte against what was written.
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { randomBytes, createHash } from 'node:crypto'
import { readFile, rm, writeFile } from 'node:fs/promises'
import path from 'node:path'
import { GiB, KiB, MiB, makeTmp, q, requireFuse, run, sh, startFcfs, type Fcfs } from '../helpers/mount.js'
import { firstDiff } from '../helpers/pyio.js'

const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex')

describe('dd, cat and cmp on a LUN', () => {
  let fab: Fcfs
  let scratch: string
  let n = 0
  /** A scratch file of random bytes (outside the mount). */
  async function randomFile(bytes: number): Promise<{ file: string; data: Buffer }> {
    const data = randomBytes(bytes)
    const file = path.join(scratch, `src-${n++}.bin`)
    await writeFile(file, data)
    return { file, data }
  }
  const outFile = () => path.join(scratch, `out-${n++}.bin`)

  async function dd(...args: string[]) {
    const r = await run('dd', [...args, 'status=none'], { timeoutMs: 60_000 })
    expect(r.stderr, `dd ${args.join(' ')}`).toBe('')
    expect(r.code, `dd ${args.join(' ')}`).toBe(0)
    return r
  }

  beforeAll(async () => {
    requireFuse()
    scratch = await makeTmp('fcfs-dd-')
    fab = await startFcfs()
  })
  afterAll(async () => {
    await fab?.stop()
    if (scratch) await rm(scratch, { recursive: true, force: true })
  })

  it('writes 8 MiB with plain dd (no conv=notrunc) and reads the same bytes back with dd', async () => {
    const { file, data } = await randomFile(8 * MiB)
    await dd(`if=${file}`, `of=${fab.rwbuf(0)}`, 'bs=1M')
    const out = outFile()
    await dd(`if=${fab.rwbuf(0)}`, `of=${out}`, 'bs=1M', 'count=8')
    const back = await readFile(out)
    expect(firstDiff(back, data)).toBeNull()
    expect(sha(back)).toBe(sha(data))

    // The same bytes through other tools.
    const cat = await sh(`cat ${q(fab.rwbuf(0))} | head -c ${8 * MiB}`, { timeoutMs: 60_000 })
    expect(cat.stdoutBuf.length).toBe(8 * MiB)
    expect(sha(cat.stdoutBuf)).toBe(sha(data))
    const cmp = await run('cmp', ['-n', String(8 * MiB), file, fab.rwbuf(0)])
    expect(cmp.stdout + cmp.stderr).toBe('')
    expect(cmp.code).toBe(0)
  })

  it('leaves the LUN size at 1 GiB after a dd that did not pass conv=notrunc', async () => {
    const r = await run('stat', ['-c', '%s', fab.rwbuf(0)])
    expect(r.stdout.trim()).toBe(String(GiB))
  })

  it('writes and reads back with oflag=direct / iflag=direct at bs=640K', async () => {
    const off = 64 * MiB
    const { file, data } = await randomFile(10 * 640 * KiB)
    await dd(`if=${file}`, `of=${fab.rwbuf(0)}`, 'bs=640K', 'oflag=direct,seek_bytes', `seek=${off}`)
    const out = outFile()
    await dd(`if=${fab.rwbuf(0)}`, `of=${out}`, 'bs=640K', 'iflag=direct,skip_bytes', `skip=${off}`, 'count=10')
    const back = await readFile(out)
    expect(firstDiff(back, data)).toBeNull()
  })

  it('writes and reads back with oflag=direct / iflag=direct at bs=4k', async () => {
    const off = 128 * MiB
    const { file, data } = await randomFile(MiB)
    await dd(`if=${file}`, `of=${fab.rwbuf(0)}`, 'bs=4k', 'oflag=direct,seek_bytes', `seek=${off}`)
    const out = outFile()
    await dd(`if=${fab.rwbuf(0)}`, `of=${out}`, 'bs=4k', 'iflag=direct,skip_bytes', `skip=${off}`, `count=${MiB / (4 * KiB)}`)
    expect(firstDiff(await readFile(out), data)).toBeNull()
  })

  it('reads with O_DIRECT what a buffered dd wrote, and the reverse', async () => {
    const off = 160 * MiB
    const a = await randomFile(2 * MiB)
    await dd(`if=${a.file}`, `of=${fab.rwbuf(0)}`, 'bs=1M', 'oflag=seek_bytes', `seek=${off}`)
    const out1 = outFile()
    await dd(`if=${fab.rwbuf(0)}`, `of=${out1}`, 'bs=64k', 'iflag=direct,skip_bytes,count_bytes', `skip=${off}`, `count=${2 * MiB}`)
    expect(firstDiff(await readFile(out1), a.data)).toBeNull()

    const b = await randomFile(2 * MiB)
    await dd(`if=${b.file}`, `of=${fab.rwbuf(0)}`, 'bs=128k', 'oflag=direct,seek_bytes', `seek=${off}`)
    const out2 = outFile()
    await dd(`if=${fab.rwbuf(0)}`, `of=${out2}`, 'bs=1M', 'iflag=skip_bytes,count_bytes', `skip=${off}`, `count=${2 * MiB}`)
    expect(firstDiff(await readFile(out2), b.data)).toBeNull()
  })

  it('keeps the data beyond what a later dd wrote (dd without notrunc does not truncate)', async () => {
    const off = 256 * MiB
    const first = await randomFile(8 * MiB)
    await dd(`if=${first.file}`, `of=${fab.rwbuf(0)}`, 'bs=1M', 'oflag=seek_bytes', `seek=${off}`)
    const second = await randomFile(MiB)
    // dd ftruncate()s its output to the seek offset unless conv=notrunc.
    await dd(`if=${second.file}`, `of=${fab.rwbuf(0)}`, 'bs=1M', 'oflag=seek_bytes', `seek=${off}`)
    const out = outFile()
    await dd(`if=${fab.rwbuf(0)}`, `of=${out}`, 'bs=1M', 'count=8', 'iflag=skip_bytes', `skip=${off}`)
    const expected = Buffer.concat([second.data, first.data.subarray(MiB)])
    expect(firstDiff(await readFile(out), expected)).toBeNull()
  })

  it('keeps data written at the start when a dd from offset 0 writes less', async () => {
    // The plainest user story: `dd if=small of=rwbuf` then the rest of the LUN is still there.
    const big = await randomFile(3 * MiB)
    await dd(`if=${big.file}`, `of=${fab.rwbuf(1)}`, 'bs=1M')
    const small = await randomFile(1000)
    await dd(`if=${small.file}`, `of=${fab.rwbuf(1)}`, 'bs=1M')
    const out = outFile()
    await dd(`if=${fab.rwbuf(1)}`, `of=${out}`, 'bs=1M', 'count=3')
    const expected = Buffer.concat([small.data, big.data.subarray(1000)])
    expect(firstDiff(await readFile(out), expected)).toBeNull()
    expect((await run('stat', ['-c', '%s', fab.rwbuf(1)])).stdout.trim()).toBe(String(GiB))
  })

  it('keeps the two target ports independent', async () => {
    const off = 512 * MiB
    const a = await randomFile(MiB)
    const b = await randomFile(MiB)
    await dd(`if=${a.file}`, `of=${fab.rwbuf(0)}`, 'bs=1M', 'conv=notrunc', 'oflag=seek_bytes', `seek=${off}`)
    await dd(`if=${b.file}`, `of=${fab.rwbuf(1)}`, 'bs=1M', 'conv=notrunc', 'oflag=seek_bytes', `seek=${off}`)
    const oa = outFile()
    const ob = outFile()
    await dd(`if=${fab.rwbuf(0)}`, `of=${oa}`, 'bs=1M', 'count=1', 'iflag=skip_bytes', `skip=${off}`)
    await dd(`if=${fab.rwbuf(1)}`, `of=${ob}`, 'bs=1M', 'count=1', 'iflag=skip_bytes', `skip=${off}`)
    expect(firstDiff(await readFile(oa), a.data)).toBeNull()
    expect(firstDiff(await readFile(ob), b.data)).toBeNull()
  })

  it('passes a fio write-then-verify job with O_DIRECT random 4k writes', async () => {
    const r = await run('fio', [
      '--name=verify', `--filename=${fab.rwbuf(1)}`, '--rw=randwrite', '--bs=4k',
      `--offset=${600 * MiB}`, '--size=8M', '--direct=1', '--ioengine=psync',
      '--verify=crc32c', '--do_verify=1', '--verify_fatal=1', '--verify_state_save=0', '--randrepeat=1', '--output-format=terse',
    ], { timeoutMs: 120_000, cwd: scratch })
    expect(r.stderr).not.toMatch(/verify|error/i)
    expect(r.code, r.stdout + r.stderr).toBe(0)
  })
})
