import { describe, expect, it } from 'vitest'
import {
  CDB,
  CDB_SIZE,
  CLOSE_SIZE,
  HEADER_SIZE,
  HELLO_SIZE,
  IO,
  IO_REPLY,
  IO_REPLY_SIZE,
  IO_SIZE,
  IoFlags,
  LAYOUTS,
  MsgType,
  OPEN_REPLY_SIZE,
  OPEN_SIZE,
  REGISTER_SHM_SIZE,
  STATUS_REPLY_SIZE,
  Status,
  decodeCdb,
  decodeClose,
  decodeHeader,
  decodeHello,
  decodeIo,
  decodeIoReply,
  decodeOpen,
  decodeOpenReply,
  decodeRegisterShm,
  decodeStatusReply,
  encodeCdb,
  encodeClose,
  encodeHello,
  encodeIo,
  encodeIoReply,
  encodeNop,
  encodeOpen,
  encodeOpenReply,
  encodeRegisterShm,
  encodeStatusReply,
  msgTypeName,
  replyOk,
  statusName,
  writeHeader,
  writeStatusReply,
} from '../../src/api/protocol.js'
import { readU32LE, readU64LE, writeU16LE, writeU32LE, writeU64LE } from '../../src/util/le.js'
import { checkLayout } from '../../src/util/layout.js'

const hex = (b: Buffer) => b.toString('hex').replace(/(.{8})/g, '$1 ').trim()

describe('api protocol layouts', () => {
  it('every layout tiles its size with no gap or overlap, and 4- and 8-byte fields are aligned', () => {
    expect(LAYOUTS.map((l) => l.name)).toEqual(['HEADER', 'HELLO', 'OPEN', 'OPEN_REPLY', 'CLOSE', 'STATUS_REPLY', 'REGISTER_SHM', 'IO', 'CDB', 'IO_REPLY'])
    for (const layout of LAYOUTS) {
      expect(() => checkLayout(layout), layout.name).not.toThrow()
      for (const [name, f] of Object.entries(layout.fields)) {
        if (f.length === 8 || f.length === 4) expect(f.offset % f.length, `${layout.name}.${name} at ${f.offset}`).toBe(0)
      }
    }
  })

  it('sizes match the C header and the documentation', () => {
    expect([HEADER_SIZE, HELLO_SIZE, OPEN_SIZE, OPEN_REPLY_SIZE, CLOSE_SIZE, STATUS_REPLY_SIZE, REGISTER_SHM_SIZE, IO_SIZE, CDB_SIZE, IO_REPLY_SIZE]).toEqual([
      16, 32, 32, 40, 24, 24, 288, 48, 64, 40,
    ])
  })

  it('the seed flag bits keep their values', () => {
    expect([IoFlags.READ, IoFlags.WRITE, IoFlags.ASYNC, IoFlags.CDB10]).toEqual([1, 2, 4, 8])
  })

  it('names types and statuses', () => {
    expect(msgTypeName(MsgType.IO_REPLY)).toBe('IO_REPLY')
    expect(msgTypeName(0x55)).toBe('0x55')
    expect(statusName(Status.BAD_HANDLE)).toBe('BAD_HANDLE')
    expect(statusName(99)).toBe('status 99')
  })
})

describe('api protocol golden bytes', () => {
  it('IO request', () => {
    const b = Buffer.alloc(IO_SIZE)
    encodeIo({ key: 0x0102030405060708n, handle: 0x00010001, flags: IoFlags.READ | IoFlags.INLINE, lba: 0x1_0000_0002, blocks: 8 }, b)
    expect(hex(b)).toBe(
      'a1fc0110 30000000 08070605 04030201 01000100 11000000 02000000 01000000 08000000 00000000 00000000 00000000',
    )
  })

  it('IO request with inline data counts it in length', () => {
    const b = Buffer.alloc(IO_SIZE)
    encodeIo({ key: 1n, handle: 5, flags: IoFlags.WRITE | IoFlags.INLINE | IoFlags.ASYNC, lba: 0, blocks: 1, inlineLength: 512 }, b)
    expect(b.readUInt32LE(4)).toBe(IO_SIZE + 512)
    expect(b.readUInt32LE(IO.fields.flags.offset)).toBe(0x16)
  })

  it('IO request over a region', () => {
    const b = Buffer.alloc(IO_SIZE)
    encodeIo({ key: 0xffffffffffffffffn, handle: 0x00020003, flags: IoFlags.WRITE | IoFlags.SHM | IoFlags.FUA, lba: 7, blocks: 1280, region: 2, offset: 655360 }, b)
    expect(hex(b)).toBe(
      'a1fc0110 30000000 ffffffff ffffffff 03000200 62000000 07000000 00000000 00050000 02000000 00000a00 00000000',
    )
  })

  it('IO reply', () => {
    const b = Buffer.alloc(IO_REPLY_SIZE)
    encodeIoReply(
      { key: 0x1122334455667788n, status: 0, compStatus: 0, scsiStatus: 2, senseKey: 5, asc: 0x21, ascq: 0, entryStatus: 0, rflags: 1, transferred: 0, residual: 512, errno: 28 },
      b,
    )
    expect(hex(b)).toBe('a1fc0190 28000000 88776655 44332211 00000000 00000205 21000001 00000000 00020000 1c000000')
  })

  it('OPEN and its reply', () => {
    const b = Buffer.alloc(OPEN_SIZE)
    encodeOpen({ key: 9n, wwpn: '21:00:00:24:ff:00:00:01', lun: 3 }, b)
    expect(hex(b)).toBe('a1fc0101 20000000 09000000 00000000 010000ff 24000021 03000000 00000000')
    const r = Buffer.alloc(OPEN_REPLY_SIZE)
    encodeOpenReply({ key: 9n, status: 0, handle: 0x00010001, blockSize: 512, blocks: 2097152 }, r)
    expect(hex(r)).toBe('a1fc0181 28000000 09000000 00000000 00000000 01000100 00020000 00000000 00002000 00000000')
  })

  it('HELLO, CLOSE, status replies and NOP', () => {
    const h = Buffer.alloc(HELLO_SIZE)
    encodeHello({ protocol: 1, maxTransfer: 16 << 20, maxInFlight: 4096, serverPid: 0x1234 }, h)
    expect(hex(h)).toBe('a1fc01a0 20000000 00000000 00000000 01000000 00000001 00100000 34120000')
    const c = Buffer.alloc(CLOSE_SIZE)
    encodeClose({ key: 2n, handle: 0x00010001 }, c)
    expect(hex(c)).toBe('a1fc0102 18000000 02000000 00000000 01000100 00000000')
    encodeClose({ key: 2n, handle: 4 }, c, 0, MsgType.UNREGISTER_SHM)
    expect(c[3]).toBe(MsgType.UNREGISTER_SHM)
    const s = Buffer.alloc(STATUS_REPLY_SIZE)
    encodeStatusReply({ type: MsgType.ERROR, key: 3n, status: Status.BAD_TYPE, detail: 0x77 }, s)
    expect(hex(s)).toBe('a1fc01ff 18000000 03000000 00000000 03000000 77000000')
    const n = Buffer.alloc(16)
    encodeNop(0xabn, n)
    expect(hex(n)).toBe('a1fc0112 10000000 ab000000 00000000')
  })

  it('REGISTER_SHM pads the path with NULs', () => {
    const b = Buffer.alloc(REGISTER_SHM_SIZE, 0xee)
    encodeRegisterShm({ key: 4n, path: '/dev/shm/x', size: 1 << 20 }, b)
    expect(hex(b.subarray(0, 42))).toBe('a1fc0103 20010000 04000000 00000000 00001000 00000000 00000000 0a000000 2f646576 2f73686d 2f78')
    expect(b.subarray(42).every((x) => x === 0)).toBe(true)
    expect(() => encodeRegisterShm({ key: 4n, path: '/' + 'a'.repeat(300), size: 1 }, b)).toThrow(/at most 255/)
  })

  it('CDB request', () => {
    const b = Buffer.alloc(CDB_SIZE)
    encodeCdb({ key: 6n, handle: 0x00010001, flags: IoFlags.READ | IoFlags.INLINE, cdb: Uint8Array.from([0x12, 0, 0, 0, 96, 0]), timeout: 30, dataLength: 96 }, b)
    expect(hex(b)).toBe(
      'a1fc0111 40000000 06000000 00000000 01000100 11000000 12000000 60000000 00000000 00000000 06001e00 60000000 00000000 00000000 00000000 00000000',
    )
    expect(b[CDB.fields.cdbLength.offset]).toBe(6)
  })
})

describe('api protocol round trips', () => {
  it('every codec decodes what it encodes', () => {
    const io = { key: 0xfedcba9876543210n, handle: 0x00030002, flags: IoFlags.WRITE | IoFlags.SHM | IoFlags.CDB16, lba: 2 ** 40 + 5, blocks: 65536, region: 3, offset: 2 ** 33, inlineLength: 0 }
    const b = Buffer.alloc(512)
    encodeIo(io, b, 7)
    expect(decodeIo(b, 7)).toEqual(io)
    expect(decodeHeader(b, 7)).toEqual({ magic: 0xfca1, version: 1, type: MsgType.IO, length: IO_SIZE, key: io.key })

    const reply = { key: 77n, status: 0, compStatus: 0x15, scsiStatus: 0, senseKey: 0, asc: 0, ascq: 0, entryStatus: 0, rflags: 0, transferred: 100, residual: 412, errno: 0, inlineLength: 100 }
    encodeIoReply(reply, b, 3)
    expect(decodeIoReply(b, 3)).toEqual(reply)
    expect(replyOk(reply)).toBe(true)
    expect(replyOk({ ...reply, scsiStatus: 2 })).toBe(false)
    expect(replyOk({ ...reply, status: Status.BAD_LBA })).toBe(false)

    const open = { key: 1n, wwpn: '21000024ff000002', lun: 7, hba: 3, flags: 0 }
    encodeOpen(open, b)
    expect(decodeOpen(b)).toEqual(open)
    const or = { key: 1n, status: 0, handle: 0x00070001, blockSize: 4096, blocks: 2 ** 40 }
    encodeOpenReply(or, b)
    expect(decodeOpenReply(b)).toEqual(or)

    encodeClose({ key: 5n, handle: 0xdeadbeef }, b)
    expect(decodeClose(b)).toEqual({ key: 5n, handle: 0xdeadbeef })
    encodeStatusReply({ type: MsgType.REGISTER_REPLY, key: 5n, status: 0, detail: 9 }, b)
    expect(decodeStatusReply(b)).toEqual({ type: MsgType.REGISTER_REPLY, key: 5n, status: 0, detail: 9 })

    encodeRegisterShm({ key: 8n, path: '/dev/shm/région', size: 123456789 }, b)
    expect(decodeRegisterShm(b)).toEqual({ key: 8n, path: '/dev/shm/région', size: 123456789, flags: 0 })

    const cdb = { key: 2n, handle: 1, flags: IoFlags.WRITE | IoFlags.INLINE, cdb: Uint8Array.from([0x2a, 0, 0, 0, 0, 1, 0, 0, 1, 0]), timeout: 5, dataLength: 512, region: 0, offset: 0, inlineLength: 512 }
    encodeCdb(cdb, b)
    expect(decodeCdb(b)).toEqual(cdb)

    const hello = { key: 0n, protocol: 1, maxTransfer: 1 << 24, maxInFlight: 4096, serverPid: 42 }
    encodeHello(hello, b)
    expect(decodeHello(b)).toEqual(hello)
  })

  it('decoders refuse short buffers; REGISTER_SHM with junk after the path decodes to a null path', () => {
    expect(() => decodeIo(Buffer.alloc(IO_SIZE - 1))).toThrow(/needs 48 bytes/)
    expect(() => decodeIoReply(Buffer.alloc(8))).toThrow(/IO_REPLY/)
    const b = Buffer.alloc(REGISTER_SHM_SIZE)
    encodeRegisterShm({ key: 1n, path: '/dev/shm/a', size: 10 }, b)
    b[32 + 20] = 0x41
    expect(decodeRegisterShm(b).path).toBeNull()
    b.writeUInt32LE(0, 28)
    expect(decodeRegisterShm(b).path).toBeNull()
    expect(IO_REPLY.fields.errno.offset).toBe(36)
  })
})

describe('api protocol accessors (the per-message path of the server and the client)', () => {
  it('writeHeader and writeStatusReply at an offset write the bytes the codecs write, key split as two u32', () => {
    const a = Buffer.alloc(40, 0xee)
    const b = Buffer.alloc(40, 0xee)
    writeStatusReply(a, 8, MsgType.IO_ACK, 0x11223344, 0x55667788, Status.BAD_RANGE, 0xfffffffe)
    encodeStatusReply({ type: MsgType.IO_ACK, key: 0x5566778811223344n, status: Status.BAD_RANGE, detail: 0xfffffffe }, b, 8)
    expect(a.toString('hex')).toBe(b.toString('hex'))
    expect(hex(a.subarray(8, 32))).toBe('a1fc0191 18000000 44332211 88776655 0a000000 feffffff')
    writeHeader(a, 0, MsgType.NOP, 16, 7, 0)
    expect(hex(a.subarray(0, 16))).toBe('a1fc0112 10000000 07000000 00000000')
  })

  it('the little-endian leaf accessors agree with Buffer, u64 up to 2^53 - 1', () => {
    const b = Buffer.alloc(16)
    writeU32LE(b, 1, 0xdeadbeef)
    expect(b.readUInt32LE(1)).toBe(0xdeadbeef)
    expect(readU32LE(b, 1)).toBe(0xdeadbeef)
    writeU16LE(b, 5, 0x1234)
    expect(b.readUInt16LE(5)).toBe(0x1234)
    writeU64LE(b, 8, Number.MAX_SAFE_INTEGER)
    expect(b.readBigUInt64LE(8)).toBe(BigInt(Number.MAX_SAFE_INTEGER))
    expect(readU64LE(b, 8)).toBe(Number.MAX_SAFE_INTEGER)
  })
})
