// Data integrity under concurrency: fio with verify=crc32c on every target at once
// (O_DIRECT and buffered write-back, block sizes from 512 bytes to 256 KiB, aligned
// and unaligned), re-verified from a second fio process; then several processes
// writing interleaved, unaligned stripes of the same blocks (O_DIRECT, O_SYNC and
// buffered), with the final content checked byte for byte against the one result
// the ownership of the bytes allows.
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { writeFile } from 'node:fs/promises'
import path from 'node:path'
import { KiB, MiB, python, requireFuse, run, startFcfs, type Fcfs } from '../helpers/mount.js'

const TARGETS = 4
const SIZE = 64 * MiB

/** fio sections: per target a direct aligned job, a buffered unaligned job and a buffered sequential 1 MiB job, each in its own region. */
function fioJobs(fab: Fcfs): string {
  const out = ['[global]', 'ioengine=psync', 'verify=crc32c', 'verify_state_save=0', 'verify_fatal=1', 'do_verify=1', 'randrepeat=1', 'group_reporting=0', '']
  for (let t = 0; t < TARGETS; t++) {
    const dev = fab.rwbuf(t)
    out.push(
      `[t${t}-direct-bsrange]`, `filename=${dev}`, 'rw=randwrite', 'direct=1', 'bsrange=512-256k', 'blockalign=512', 'offset=0', 'size=16m', `randseed=${100 + t}`, '',
      `[t${t}-buffered-unaligned]`, `filename=${dev}`, 'rw=randwrite', 'direct=0', 'bsrange=512-256k', 'bs_unaligned=1', 'offset=20m', 'size=16m', `randseed=${200 + t}`, '',
      `[t${t}-buffered-seq-1m]`, `filename=${dev}`, 'rw=write', 'direct=0', 'bs=1m', 'offset=40m', 'size=16m', `randseed=${300 + t}`, '',
    )
  }
  return out.join('\n')
}

describe('fio verify=crc32c on every target at once', () => {
  let fab: Fcfs
  beforeAll(async () => {
    requireFuse()
    fab = await startFcfs({ args: ['--targets', String(TARGETS), '--size', '64MiB'] })
  })
  afterAll(async () => {
    await fab?.stop()
  })

  it(`runs ${TARGETS * 3} jobs (O_DIRECT 512-256k, buffered unaligned 512-256k, buffered 1 MiB) with zero verify errors, then re-verifies from a new process`, async () => {
    const job = path.join(fab.tmp, 'integrity.fio')
    await writeFile(job, fioJobs(fab))
    const w = await run('fio', ['--output-format=json', job], { timeoutMs: 120_000 })
    expect(w.code, `fio: ${w.stderr.slice(0, 2000)}`).toBe(0)
    const res = JSON.parse(w.stdout.slice(w.stdout.indexOf('{')))
    expect(res.jobs).toHaveLength(TARGETS * 3)
    for (const j of res.jobs) {
      expect(j.error, `${j.jobname}`).toBe(0)
      // (random block sizes may leave the last few KiB of a region unwritten)
      expect(j.write.io_bytes, `${j.jobname} wrote its region`).toBeGreaterThan(15 * MiB)
      // do_verify: everything written was read back and checked.
      expect(j.read.io_bytes, `${j.jobname} verified what it wrote`).toBeGreaterThanOrEqual(j.write.io_bytes)
    }
    // A second fio process re-reads and checks every block (same seeds → same expected data).
    const v = await run('fio', ['--output-format=json', '--verify_only', job], { timeoutMs: 120_000 })
    expect(v.code, `fio --verify_only: ${v.stderr.slice(0, 2000)}`).toBe(0)
    const vres = JSON.parse(v.stdout.slice(v.stdout.indexOf('{')))
    for (const j of vres.jobs) {
      expect(j.error, j.jobname).toBe(0)
      expect(j.read.io_bytes, `${j.jobname} re-verified`).toBeGreaterThan(15 * MiB)
    }
    // The write-back path was really used, and nothing failed underneath.
    for (let t = 0; t < TARGETS; t++) {
      const s = JSON.parse((await run('cat', [path.join(fab.mnt, 'wwn', fab.wwpns[t], 'lun', '0', 'stats.json')])).stdout)
      expect(s.fs.writebackWrites, `target ${t} write-back`).toBeGreaterThan(0)
      expect(s.fs.readModifyWrites, `target ${t} RMW`).toBeGreaterThan(0)
      expect(s.fs.errors).toBe(0)
      expect(s.fs.writebackErrors).toBe(0)
    }
  }, 240_000)
})

/**
 * Writer k of P owns every byte whose stripe index floor((off - base) / stripe) ≡ k (mod P)
 * in [base, base + len) and writes each of its stripes, in a shuffled order, with
 * value(off) = (off * 131 + k * 17 + pass) & 0xff. Stripes cross block boundaries and
 * share blocks with the other writers, so every write is a read-modify-write of a
 * block someone else is modifying too.
 */
const STRIPE_WRITER = String.raw`
import os, sys, random
p, k, P, stripe, base, length, flags, passes = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]), int(sys.argv[6]), sys.argv[7], int(sys.argv[8])
fl = os.O_RDWR
for f in flags.split('|'):
    if f: fl |= getattr(os, f)
fd = os.open(p, fl)
mine = [s for s in range((length + stripe - 1) // stripe) if s % P == k]
for ps in range(passes):
    random.Random(k * 1000 + ps).shuffle(mine)
    for s in mine:
        off = base + s * stripe
        n = min(stripe, base + length - off)
        data = bytes(((o * 131 + k * 17 + ps) & 0xff) for o in range(off, off + n))
        w = os.pwrite(fd, data, off)
        assert w == n, (off, n, w)
os.fsync(fd)
os.close(fd)
print('done', len(mine) * passes)
`

const CHECK = String.raw`
import os, sys, json
p, P, stripe, base, length, passes = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]), int(sys.argv[6])
fd = os.open(p, os.O_RDONLY)
got = os.pread(fd, length, base)
os.close(fd)
bad = []
for i in range(length):
    off = base + i
    k = (i // stripe) % P
    want = (off * 131 + k * 17 + passes - 1) & 0xff
    if got[i] != want:
        bad.append(off)
        if len(bad) > 20: break
print(json.dumps({'len': len(got), 'bad': bad}))
`

describe('overlapping unaligned writers from several processes', () => {
  let fab: Fcfs
  beforeAll(async () => {
    requireFuse()
    fab = await startFcfs({ args: ['--targets', '2', '--size', '16MiB', '--block-size', '4096'] })
  })
  afterAll(async () => {
    await fab?.stop()
  })

  // [stripe bytes, writers, region bytes, target]
  const layouts: [number, number, number, number][] = [
    [7, 6, 12 * KiB, 0], // many tiny stripes: every 4 KiB block has all six writers in it
    [301, 5, 64 * KiB, 1], // stripes straddling block boundaries
    [4097, 4, 128 * KiB, 0], // just over a block: head and tail RMW on every write
  ]
  for (const [stripe, writers, length, target] of layouts) {
    it(`${writers} processes writing ${stripe}-byte stripes of the same ${length / KiB} KiB (O_DIRECT, O_SYNC, buffered mixed) end with exactly their bytes`, async () => {
      const base = 8 * MiB + 1234 // an odd base: nothing is aligned
      const passes = 2
      const modes = ['O_DIRECT', 'O_SYNC', '', 'O_DIRECT', '', 'O_SYNC']
      const dev = fab.rwbuf(target)
      const rs = await Promise.all(
        Array.from({ length: writers }, (_, k) => python(STRIPE_WRITER, [dev, k, writers, stripe, base, length, modes[k % modes.length], passes], { timeoutMs: 120_000 })),
      )
      for (const r of rs) expect(r.code, r.stderr).toBe(0)
      const c = await python(CHECK, [dev, writers, stripe, base, length, passes])
      expect(c.code, c.stderr).toBe(0)
      const res = JSON.parse(c.stdout)
      expect(res.len).toBe(length)
      expect(res.bad, 'offsets whose byte is not the owner’s last write').toEqual([])
      // And the bytes just outside the region were never touched.
      const edge = await python(String.raw`
import os, sys
fd = os.open(sys.argv[1], os.O_RDONLY)
print(os.pread(fd, 64, int(sys.argv[2]) - 64).hex(), os.pread(fd, 64, int(sys.argv[2]) + int(sys.argv[3])).hex())
`, [dev, base, length])
      expect(edge.stdout.trim()).toBe(`${'00'.repeat(64)} ${'00'.repeat(64)}`)
    }, 150_000)
  }
})
