// The write log (targets/write-log.ts, format in targets/write-log-format.ts) and `fcfs replay`
// (src/replay.ts): golden bytes of the format, what the taps record and in which order, and that a
// replay rebuilds the bytes the unit held — at a flush mark, after a crash with keep=, across power
// cycles, and from the medium stream.
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { readFileSync } from 'node:fs'
import { mkdtemp, readFile, rm, truncate, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { checkLayout } from '../../src/util/layout.js'
import { encodeReadWrite, encodeSyncCache10 } from '../../src/scsi/cdb.js'
import { LogicalUnit } from '../../src/scsi/lu.js'
import type { ScsiOutcome } from '../../src/scsi/types.js'
import { RamBackend } from '../../src/targets/ram.js'
import { buildFabric, openFabric, closeFabric, parseConfig } from '../../src/targets/config.js'
import { HostLogTap, LoggedWriteCache, MediumLogTap, WriteLog } from '../../src/targets/write-log.js'
import { WriteCache, type KeepPolicy } from '../../src/targets/write-cache.js'
import {
  decodeHeader,
  decodeRecord,
  encodeHeader,
  encodeRecord,
  HEADER_LAYOUT,
  RECORD_LAYOUT,
  RecordType,
  Stream,
  type LogHeader,
  type LogRecord,
} from '../../src/targets/write-log-format.js'
import { listLog, readLogIndex, replay, type LogIndex, type ReplayOptions } from '../../src/replay.js'
import { CLI } from '../helpers/mount.js'
import { run as runProcess } from '../helpers/run.js'
import { makeLun } from './scsi-helpers.js'

const BS = 512
const BLOCKS = 64
const NAA = '50024ff000001000'
const hex = (b: Uint8Array) => Buffer.from(b).toString('hex')

let dir: string
beforeAll(async () => {
  dir = await mkdtemp(path.join(tmpdir(), 'fcfs-wlog-'))
})
afterAll(async () => {
  await rm(dir, { recursive: true, force: true })
})

let n = 0
const file = (name: string) => path.join(dir, `${n++}-${name}`)

const HEADER: LogHeader = { flags: 3, blockSize: 512, capacity: 32 * 1024 * 1024, naa: NAA, startedMs: 1_700_000_000_000 }
const HEADER_HEX =
  '46434653574c4f47' + '0100' + '4000' + '4000' + '0300' + '00020000' + '00000000' + '0000000200000000' + '50024ff000001000' + '0068e5cf8b010000' + '00'.repeat(16)

const rec = (over: Partial<LogRecord>): LogRecord => ({
  type: RecordType.WRITE,
  stream: Stream.HOST,
  flags: 0,
  keep: 0,
  seq: 1,
  lba: 0,
  blocks: 0,
  covers: 0,
  mark: 0,
  cycle: 0,
  seed: 0,
  dataLength: 0,
  ...over,
})

describe('the write log format', () => {
  it('declares a 64-byte file header and a 64-byte record header whose fields tile them', () => {
    expect(() => checkLayout(HEADER_LAYOUT)).not.toThrow()
    expect(() => checkLayout(RECORD_LAYOUT)).not.toThrow()
    expect([HEADER_LAYOUT.size, RECORD_LAYOUT.size]).toEqual([64, 64])
  })

  it('encodes the file header as its golden bytes and decodes them back, also at an offset', () => {
    const b = Buffer.alloc(64)
    expect(encodeHeader(HEADER, b, 0)).toBe(64)
    expect(hex(b)).toBe(HEADER_HEX)
    expect(decodeHeader(b)).toEqual(HEADER)
    const at7 = Buffer.alloc(71, 0xee)
    encodeHeader(decodeHeader(b), at7, 7)
    expect(hex(at7.subarray(7))).toBe(HEADER_HEX)
    expect(hex(at7.subarray(0, 7))).toBe('ee'.repeat(7))
  })

  it('encodes WRITE, whole-unit FLUSH and POWER_LOSS records as their golden bytes and decodes them back', () => {
    const cases: [LogRecord, string][] = [
      [
        rec({ seq: 5, lba: 0x10, blocks: 2, cycle: 1, dataLength: 1024 }),
        '57524543' + '01' + '00' + '00' + '00' + '0500000000000000' + '1000000000000000' + '0200000000000000' + '00'.repeat(8) + '00000000' + '01000000' + '00000000' + '00040000' + '00'.repeat(8),
      ],
      [
        rec({ type: RecordType.FLUSH, seq: 0x1_0000_0001, blocks: 65536, covers: 0x1_0000_0000, mark: 2 }),
        '57524543' + '02' + '00' + '00' + '00' + '0100000001000000' + '00'.repeat(8) + '0000010000000000' + '0000000001000000' + '02000000' + '00000000' + '00000000' + '00000000' + '00'.repeat(8),
      ],
      [
        rec({ type: RecordType.POWER_LOSS, stream: Stream.MEDIUM, keep: 2, seq: 9, cycle: 3, seed: 0xdeadbeef }),
        '57524543' + '04' + '01' + '00' + '02' + '0900000000000000' + '00'.repeat(24) + '00000000' + '03000000' + 'efbeadde' + '00000000' + '00'.repeat(8),
      ],
    ]
    for (const [r, golden] of cases) {
      const b = Buffer.alloc(64 + 3)
      expect(encodeRecord(r, b, 3)).toBe(64)
      expect(hex(b.subarray(3))).toBe(golden)
      const withData = Buffer.concat([b.subarray(3), Buffer.alloc(r.dataLength)])
      expect(decodeRecord(withData, 0, HEADER, 'r')).toEqual(r)
    }
  })

  it('refuses a header that is short, of another magic or version, or of a block size that is not 512 or 4096, saying which', () => {
    const b = Buffer.alloc(64)
    encodeHeader(HEADER, b)
    expect(() => decodeHeader(b.subarray(0, 40))).toThrow('write log header: is truncated: 40 of 64 bytes')
    const magic = Buffer.from(b)
    magic.write('NOTALOG!', 0, 'latin1')
    expect(() => decodeHeader(magic)).toThrow('write log header: has magic "NOTALOG!", not "FCFSWLOG": not an fcfs write log')
    const version = Buffer.from(b)
    version[8] = 2
    expect(() => decodeHeader(version)).toThrow('has version 2; this fcfs reads version 1')
    const bs = Buffer.from(b)
    bs.writeUInt32LE(1000, 16)
    expect(() => decodeHeader(bs)).toThrow('has block size 1000, not 512 or 4096')
  })

  it('refuses a record with a bad magic, an unknown type, a range past the unit or a wrong data length, naming the record', () => {
    const enc = (r: LogRecord) => {
      const b = Buffer.alloc(64 + r.dataLength)
      encodeRecord(r, b, 0)
      return b
    }
    const bad = enc(rec({ blocks: 1, dataLength: 512 }))
    bad[0] = 0x58
    expect(() => decodeRecord(bad, 0, HEADER, 'record 3')).toThrow('record 3: has magic "XREC", not "WREC" (the log is damaged here)')
    const type = enc(rec({}))
    type[4] = 9
    expect(() => decodeRecord(type, 0, HEADER, 'r')).toThrow('has unknown type 9')
    expect(() => decodeRecord(enc(rec({ lba: 65535, blocks: 2, dataLength: 1024 })), 0, HEADER, 'r')).toThrow('(WRITE) covers blocks 65535..65536, past the unit\'s 65536 blocks')
    expect(() => decodeRecord(enc(rec({ blocks: 2, dataLength: 512 })), 0, HEADER, 'r')).toThrow('(WRITE) has 512 data bytes, expected 1024')
    expect(() => decodeRecord(Buffer.alloc(10), 0, HEADER, 'r')).toThrow('r: is truncated: 10 of 64 header bytes')
  })
})

/** A unit as config.ts builds one with "writeCache": "volatile" and "writeLog", over RAM, with no destage timer. */
async function loggedUnit(opts: { cache?: boolean; seed?: number } = {}) {
  const medium = new RamBackend(BLOCKS * BS)
  const logPath = file('unit.wlog')
  const cached = opts.cache ?? true
  const wl = await WriteLog.open({ path: logPath, blockSize: BS, capacity: BLOCKS * BS, naa: NAA, cache: cached, fresh: true })
  const cache = cached ? new LoggedWriteCache(new MediumLogTap(medium, wl), { blockSize: BS, seed: opts.seed ?? 1, destageIntervalMs: 0 }, wl) : undefined
  const host = new HostLogTap(cache ?? medium, wl)
  const lun = makeLun({ blocks: BLOCKS, backend: host, ...(cache ? { writeCache: cache } : {}) })
  const lu = new LogicalUnit(lun)
  await cmd(lu, (c) => c.writeUInt8(0, 0)) // TEST UNIT READY: takes the power-on unit attention
  return { medium, wl, cache, host, lu, logPath }
}

function cmd(lu: LogicalUnit, build: (cdb: Buffer) => unknown, opts: { dataOut?: Buffer; dataIn?: number } = {}): Promise<ScsiOutcome & { data: Buffer }> {
  const cdb = Buffer.alloc(16)
  build(cdb)
  const dataIn = opts.dataIn !== undefined ? Buffer.alloc(opts.dataIn) : null
  return new Promise((resolve) => lu.execute({ cdb, dataIn, dataOut: opts.dataOut ?? null, initiator: 'init-a' }, (o) => resolve({ ...o, data: dataIn ?? Buffer.alloc(0) })))
}

const fill = (blocks: number, tag: number) => Buffer.alloc(blocks * BS, tag)

/** Every block's first byte of a whole-unit buffer, as hex. */
function tags(b: Buffer): string {
  let s = ''
  for (let i = 0; i < b.length / BS; i++) s += b[i * BS].toString(16).padStart(2, '0')
  return s
}

async function view(u: { host: HostLogTap }): Promise<Buffer> {
  const b = Buffer.alloc(BLOCKS * BS)
  expect(await u.host.read(0, b)).toBeNull()
  return b
}

function mediumBytes(u: { medium: RamBackend }): Buffer {
  const b = Buffer.alloc(BLOCKS * BS)
  expect(u.medium.read(0, b)).toBeNull()
  return b
}

async function replayed(u: { logPath: string }, o: ReplayOptions = {}): Promise<Buffer> {
  const img = file('img')
  await replay(await readLogIndex(u.logPath), img, o)
  return readFile(img)
}

const summary = (ix: LogIndex) => ix.records.map((r) => `${r.seq}:${r.stream === Stream.HOST ? 'H' : 'M'}${['', 'W', 'F', 'D', 'P', 'O'][r.type]}${r.mark ? `#${r.mark}` : ''}${r.flags ? '!' : ''}@${r.lba}+${r.blocks}`)

describe('the write log of a unit with a volatile cache', () => {
  it('records host writes as they complete, the destaging under a SYNCHRONIZE CACHE, and the cache as flush mark 1 once it is in the file', async () => {
    const u = await loggedUnit()
    expect((await cmd(u.lu, (c) => encodeReadWrite('write', 0, 2, c), { dataOut: fill(2, 0xa1) })).status).toBe(0)
    expect((await cmd(u.lu, (c) => encodeReadWrite('write', 8, 1, c), { dataOut: fill(1, 0xb2) })).status).toBe(0)
    expect((await cmd(u.lu, (c) => encodeSyncCache10(0, 0, c))).status).toBe(0)
    // GOOD came back: the mark is in the file already (looked at before the event loop turns again).
    const sizeAtGood = readFileSync(u.logPath).length
    const ix = await readLogIndex(u.logPath)
    expect(summary(ix)).toEqual(['1:HW@0+2', '2:HW@8+1', '3:MW@0+2', '4:MW@8+1', '5:MF@0+64', '6:HF#1@0+64'])
    expect(sizeAtGood).toBe(64 + ix.records.reduce((n, r) => n + 64 + r.dataLength, 0))
    expect(ix.records[5].covers).toBe(2)
    expect(ix.records[0].cycle).toBe(0)
    const data = Buffer.alloc(BS)
    await (await import('node:fs/promises')).open(u.logPath).then(async (fh) => {
      await fh.read(data, 0, BS, ix.records[1].dataAt)
      await fh.close()
    })
    expect(data.equals(fill(1, 0xb2))).toBe(true)
    await u.host.close()
  })

  it('records a FUA write as the WRITE and a FLUSH of its range, which is no flush mark', async () => {
    const u = await loggedUnit()
    expect((await cmd(u.lu, (c) => encodeReadWrite('write', 4, 2, c, { fua: true }), { dataOut: fill(2, 0xc3) })).status).toBe(0)
    const ix = await readLogIndex(u.logPath)
    expect(summary(ix)).toEqual(['1:HW@4+2', '2:MW@4+2', '3:MF@4+2', '4:HF@4+2'])
    expect(ix.records[3]).toMatchObject({ covers: 1, mark: 0 })
    await u.host.close()
  })

  it('records discards on both streams and a write the cache refused as FAILED', async () => {
    const u = await loggedUnit()
    await u.host.write(0, fill(1, 1))
    await u.host.unmap(0, BS)
    u.cache!.powerLoss('none', 0)
    expect(await u.host.write(BS, fill(1, 2))).toMatchObject({ kind: 'io' })
    u.cache!.powerOn()
    await u.host.flush()
    const ix = await readLogIndex(u.logPath)
    expect(summary(ix)).toEqual(['1:HW@0+1', '2:MD@0+1', '3:HD@0+1', '4:MP@0+0', '5:HW!@1+1', '6:HO@0+0', '7:MF@0+64', '8:HF#1@0+64'])
    expect(ix.records.map((r) => r.cycle)).toEqual([0, 0, 0, 0, 1, 1, 1, 1])
    await u.host.close()
  })

  it('replays to a flush mark the bytes the unit held when the mark completed, whatever came after', async () => {
    const u = await loggedUnit()
    await u.host.write(0, fill(4, 0x11))
    await u.host.write(2 * BS, fill(4, 0x22))
    await u.host.flush()
    const atMark1 = await view(u)
    await u.host.write(BS, fill(8, 0x33))
    await u.host.unmap(3 * BS, 2 * BS)
    await u.host.flush(0, BLOCKS * BS)
    const atMark2 = await view(u)
    await u.host.write(0, fill(BLOCKS, 0x44))
    expect(tags(atMark1).slice(0, 16)).toBe('1111222222220000')
    expect((await replayed(u, { toMark: 1 })).equals(atMark1)).toBe(true)
    expect((await replayed(u, { toMark: 2 })).equals(atMark2)).toBe(true)
    expect((await replayed(u, { toMark: 0 })).equals(Buffer.alloc(BLOCKS * BS))).toBe(true)
    expect((await replayed(u)).equals(await view(u))).toBe(true)
    await u.host.close()
  })

  it.each(['none', 'random', 'prefix'] as KeepPolicy[])(
    'replays a crash after mark 1 with keep=%s to the very disk the power-loss fault leaves with that keep and seed',
    async (keep) => {
      for (const seed of [1, 7, 99]) {
        const u = await loggedUnit()
        await u.host.write(0, fill(8, 0x10))
        await u.host.flush()
        // Unflushed: overlapping writes, so some blocks have two cached versions.
        await u.host.write(2 * BS, fill(6, 0x20))
        await u.host.write(4 * BS, fill(6, 0x30))
        await u.host.write(20 * BS, fill(3, 0x40))
        await u.host.flush(20 * BS, 3 * BS) // a ranged flush: those blocks are durable
        await u.host.write(30 * BS, fill(5, 0x50))
        const crash = u.wl.seq
        u.cache!.powerLoss(keep, seed)
        const img = file('crash')
        const s = await replay(await readLogIndex(u.logPath), img, { toMark: 1, toSeq: crash, keep, seed })
        expect(s.volatileBlocks).toBe(6 + 6 + 5)
        expect(tags(await readFile(img)), `seed ${seed}`).toBe(tags(mediumBytes(u)))
        expect((await replayed(u, { medium: true })).equals(mediumBytes(u))).toBe(true)
        await u.host.close()
      }
    },
  )

  it('replays past a power loss from the medium the cut left, then the host writes of the new power cycle', async () => {
    const u = await loggedUnit()
    await u.host.write(0, fill(4, 0x61))
    await u.host.flush()
    await u.host.write(4 * BS, fill(4, 0x62))
    await u.host.write(10 * BS, fill(4, 0x63))
    u.cache!.powerLoss('random', 5)
    u.cache!.powerOn()
    const afterCut = mediumBytes(u)
    await u.host.write(12 * BS, fill(2, 0x64))
    await u.host.flush()
    const now = await view(u)
    const ix = await readLogIndex(u.logPath)
    expect(ix.marks.length - 1).toBe(2)
    expect((await replayed(u, { toMark: 2 })).equals(now)).toBe(true)
    const cycleStart = ix.records.find((r) => r.type === RecordType.POWER_ON)!.seq
    expect((await replayed(u, { toSeq: cycleStart })).equals(afterCut)).toBe(true)
    expect((await replayed(u, { toMark: 2, keep: 'none' })).equals(now)).toBe(true)
    expect((await replayed(u, { medium: true })).equals(mediumBytes(u))).toBe(true)
    expect(listLog(ix)).toMatch(/\nmark 1 seq \d+ cycle 0\npower-loss seq \d+ cycle 0 keep=random seed=5\npower-on seq \d+ cycle 1\nmark 2 seq \d+ cycle 1\nend seq \d+\n$/)
    await u.host.close()
  })

  it('makes a write wait for the log file when more than the bound is queued', async () => {
    const medium = new RamBackend(BLOCKS * BS)
    const wl = await WriteLog.open({ path: file('small.wlog'), blockSize: BS, capacity: BLOCKS * BS, naa: NAA, cache: false, fresh: true, maxQueuedBytes: 1 })
    const host = new HostLogTap(medium, wl)
    const r = host.write(0, fill(1, 1))
    expect(r).toBeInstanceOf(Promise)
    expect(await r).toBeNull()
    await host.close()
  })

  it('answers every command with an io error naming the log once the log file cannot be written', async () => {
    const medium = new RamBackend(BLOCKS * BS)
    const logPath = file('broken.wlog')
    const wl = await WriteLog.open({ path: logPath, blockSize: BS, capacity: BLOCKS * BS, naa: NAA, cache: false, fresh: true })
    const host = new HostLogTap(medium, wl)
    await wl.close() // the file is gone from under the log: its next write fails (EBADF)
    expect(await host.write(0, fill(1, 1))).toBeNull()
    const why = { kind: 'io', message: `the write log ${logPath} could not be written: EBADF` }
    expect(await host.flush()).toEqual(why)
    expect(await host.write(0, fill(1, 1))).toEqual(why)
    expect(await host.unmap(0, BS)).toEqual(why)
  })
})

describe('the write log of a unit without a cache', () => {
  it('has host records only, and a medium replay plays them', async () => {
    const u = await loggedUnit({ cache: false })
    await u.host.write(0, fill(2, 0x71))
    await u.host.flush()
    await u.host.write(BS, fill(2, 0x72))
    const ix = await readLogIndex(u.logPath)
    expect(summary(ix)).toEqual(['1:HW@0+2', '2:HF#1@0+64', '3:HW@1+2'])
    expect(ix.header.flags).toBe(2) // FRESH, no CACHE
    expect((await replayed(u, { medium: true })).equals(mediumBytes(u))).toBe(true)
    expect(tags(await replayed(u, { keep: 'none' })).slice(0, 8)).toBe('7171' + '0000')
    await u.host.close()
  })
})

describe('replay refuses what it cannot do, naming it', () => {
  let logPath: string
  beforeAll(async () => {
    const u = await loggedUnit()
    await u.host.write(0, fill(2, 0x81))
    await u.host.flush()
    await u.host.write(0, fill(2, 0x82))
    await u.host.close()
    logPath = u.logPath
  })

  it('names a mark out of range and the marks there are', async () => {
    const ix = await readLogIndex(logPath)
    await expect(replay(ix, file('x'), { toMark: 2 })).rejects.toThrow(`--to-mark: mark 2 is out of range: ${logPath} has flush marks 1 to 1`)
    await expect(replay(ix, file('x'), { toSeq: 99 })).rejects.toThrow(`--to-seq: seq 99 is out of range: ${logPath} has records 1 to 7`)
    await expect(replay(ix, file('x'), { medium: true, keep: 'none' })).rejects.toThrow('--keep: goes with a host replay, not --medium')
  })

  it('names a truncated log, the record and where to cut it', async () => {
    const cutLog = file('cut.wlog')
    const bytes = await readFile(logPath)
    await writeFile(cutLog, bytes.subarray(0, bytes.length - 100))
    const ix = await readLogIndex(logPath)
    // The last record (a medium FLUSH, 64 bytes) is gone, and 36 bytes of the medium WRITE before it.
    const torn = ix.records[5]
    const at = torn.dataAt - 64
    await expect(readLogIndex(cutLog)).rejects.toThrow(
      `${cutLog}: record 6 (seq 6) at byte ${at}: is truncated: its 1024 data bytes end at byte ${bytes.length - 64}, the file has ${bytes.length - 100} (the records before it are whole: \`truncate -s ${at}\` keeps them)`,
    )
    await truncate(cutLog, at)
    expect((await readLogIndex(cutLog)).records.length).toBe(5)
  })

  it('names a file that is not a write log', async () => {
    const other = file('other')
    await writeFile(other, Buffer.alloc(4096, 0x41))
    await expect(readLogIndex(other)).rejects.toThrow('write log header: has magic "AAAAAAAA", not "FCFSWLOG": not an fcfs write log')
  })
})

describe('"writeLog" in the config', () => {
  it('puts the host tap in front of the cache and the medium tap under it, and writes the header when the fabric opens', async () => {
    const logPath = file('cfg.wlog')
    const cfg = parseConfig({ targets: [{ luns: [{ size: '1MiB', writeCache: 'volatile', writeLog: logPath }] }] }, '')
    const fabric = await openFabric(cfg)
    const lun = fabric.ports[0].luns.get(0)!
    expect(lun.backend).toBeInstanceOf(HostLogTap)
    expect(lun.writeCache).toBeInstanceOf(LoggedWriteCache)
    expect((lun.writeCache as WriteCache).inner).toBeInstanceOf(MediumLogTap)
    expect(lun.backend.info?.()).toMatchObject({ write_log: logPath, write_log_seq: 0, write_log_marks: 0 })
    await closeFabric(fabric)
    const ix = await readLogIndex(logPath)
    expect(ix.header).toMatchObject({ flags: 3, blockSize: 512, capacity: 1024 * 1024, naa: cfg.targets[0].luns[0].naa })
    // close() wrote the (empty) cache back through a whole-unit flush of the medium only.
    expect(summary(ix)).toEqual(['1:MF@0+2048'])
  })

  it('refuses a log path used twice or equal to a backing file, and a log on a LUN that exports a shared unit', () => {
    const p = path.join(dir, 'same.wlog')
    expect(() => parseConfig({ targets: [{ luns: [{ writeLog: p }, { writeLog: p }] }] }, '')).toThrow(`targets[0].luns[1].writeLog: ${p} is already the write log of targets[0].luns[0]`)
    expect(() => parseConfig({ targets: [{ luns: [{ backend: { type: 'file', path: p } }, { writeLog: p }] }] }, '')).toThrow(`targets[0].luns[1].writeLog: ${p} is already the backing file of targets[0].luns[0]`)
    expect(() => parseConfig({ targets: [{ luns: [{ writeLog: p }, { backend: { type: 'file', path: p } }] }] }, '')).toThrow(`targets[0].luns[1].backend.path: ${p} is the write log of targets[0].luns[0]`)
    expect(() => parseConfig({ logicalUnits: [{ id: 'u' }], targets: [{ luns: [{ logicalUnit: 'u', writeLog: p }] }] }, '')).toThrow(
      'targets[0].luns[0].writeLog: cannot be set on a LUN that exports logical unit "u"; set it in logicalUnits[0]',
    )
    expect(() => buildFabric(parseConfig({ targets: [{ luns: [{ writeLog: p }] }] }, ''))).toThrow('buildFabric: targets[0].luns[0] has a write log; use openFabric')
  })

  it('refuses a log path open(2) cannot take: over 4095 bytes, or with a NUL byte', () => {
    expect(() => parseConfig({ targets: [{ luns: [{ writeLog: 'a'.repeat(4096) }] }] }, '')).toThrow(/^targets\[0\]\.luns\[0\]\.writeLog: must be a file path of at most 4095 bytes without NUL, got "a{40}…" \(4096 characters\)$/)
    expect(() => parseConfig({ logicalUnits: [{ id: 'u', writeLog: 'x\0y' }], targets: [{ luns: [{ logicalUnit: 'u' }] }] }, '')).toThrow('logicalUnits[0].writeLog: must be a file path of at most 4095 bytes without NUL')
  })

  it('refuses a log in a directory that does not exist, naming the field', async () => {
    const cfg = parseConfig({ targets: [{ luns: [{ size: '1MiB', writeLog: path.join(dir, 'nope', 'x.wlog') }] }] }, '')
    await expect(openFabric(cfg)).rejects.toThrow(`targets[0].luns[0].writeLog: the directory ${path.join(dir, 'nope')} does not exist`)
  })
})

// Each runs the built CLI (npm run build): a few node start-ups, slow on a busy machine.
describe('fcfs replay', { timeout: 30_000 }, () => {
  let logPath: string
  beforeAll(async () => {
    const u = await loggedUnit()
    await u.host.write(0, fill(2, 0x91))
    await u.host.flush()
    await u.host.write(4 * BS, fill(2, 0x92))
    await u.host.flush()
    await u.host.close()
    logPath = u.logPath
  })

  it('lists the unit, the counts and the flush marks', async () => {
    const r = await runProcess(process.execPath, [CLI, 'replay', '--list', logPath])
    expect(r.code).toBe(0)
    expect(r.stdout).toMatch(/^unit 50024ff000001000: 32 KiB \(32768 bytes\), 512-byte blocks, write cache volatile, fresh when the log began, started \S+\n/)
    expect(r.stdout).toContain('records 1 to 9: host: 2 writes, 2 flushes, 0 discards; medium: 2 writes, 3 flushes, 0 discards; 0 failed; 2 flush marks\n')
    expect(r.stdout).toMatch(/\nmark 1 seq 4 cycle 0\nmark 2 seq 8 cycle 0\nend seq 9\n$/)
  })

  it('writes the image at a mark and says what it played', async () => {
    const img = file('cli.img')
    const r = await runProcess(process.execPath, [CLI, 'replay', logPath, img, '--to-mark', '1'])
    expect(r.stderr).toBe('')
    expect(r.code).toBe(0)
    expect(r.stdout).toBe(`${img}: host records up to seq 4 (power cycle 0): 1 writes (1024 bytes), 0 discards\n`)
    expect(tags(await readFile(img)).slice(0, 8)).toBe('9191000000000000'.slice(0, 8))
  })

  it.each([
    [['--to-mark', '3'], /^fcfs: --to-mark: mark 3 is out of range: .* has flush marks 1 to 2\n$/],
    [['--keep', 'all'], /^fcfs: --keep: must be one of "none", "random", "prefix", got "all"\n$/],
    [['--seed', '-1', '--keep', 'random'], /^fcfs: --seed: must be a whole number from 0 to 4294967295, got -1\n$/],
  ])('exits 2 naming the bad option %j', async (args, msg) => {
    const r = await runProcess(process.execPath, [CLI, 'replay', logPath, file('x.img'), ...args])
    expect(r.stderr).toMatch(msg)
    expect(r.code).toBe(2)
  })

  it('exits 2 naming a truncated log, a file that is not a log, and a log that is not there', async () => {
    const bytes = await readFile(logPath)
    const cutLog = file('cut.wlog')
    await writeFile(cutLog, bytes.subarray(0, bytes.length - 10))
    const other = file('junk')
    await writeFile(other, 'hello, this is not a log at all, just some text that is long enough\n')
    for (const [log, msg] of [
      [cutLog, /^fcfs: .*cut\.wlog: record 9 \(seq 9\) at byte \d+: is truncated: 54 of 64 header bytes\n$/],
      [other, /^fcfs: write log header: has magic "hello, t", not "FCFSWLOG": not an fcfs write log\n$/],
      [path.join(dir, 'missing.wlog'), /^fcfs: <log>: cannot open .*missing\.wlog: ENOENT\n$/],
    ] as const) {
      const r = await runProcess(process.execPath, [CLI, 'replay', log, file('y.img')])
      expect(r.stderr).toMatch(msg)
      expect(r.code).toBe(2)
    }
  })
})
