// FUSE over io_uring (src/fs/rawfuse/uring.ts): the kernel structs it reads and
// writes, where a request lands in an entry, and the FCFS_RAWFUSE_URING switch.
import { describe, expect, it } from 'vitest'
import { closeSync, readSync, writeSync } from 'node:fs'
import { checkLayout } from '../../src/util/layout.js'
import { native } from '../../src/fs/rawfuse/native.js'
import { InHeader, Op, OutHeader, WriteIn } from '../../src/fs/rawfuse/protocol.js'
import { lengthOf, packSlot, slotOf } from '../../src/fs/rawfuse/slots.js'
import { ENTRY_SIZE, IOVEC_AT, MAX_ENTRIES, PAYLOAD_AT, PAYLOAD_SIZE, possibleCpus, requestAt, Sqe, URING_LAYOUTS, UringReqHeader, uringMode } from '../../src/fs/rawfuse/uring.js'

describe('the io_uring and fuse_uring layouts', () => {
  it('tile their structs with no field outside and none overlapping', () => {
    for (const l of URING_LAYOUTS) expect(() => checkLayout(l), l.name).not.toThrow()
  })

  it('put the FUSE command where the kernel reads it: cmd_op over off, the 80-byte command area at 48 of a 128-byte SQE', () => {
    expect(Sqe.cmd_op).toBe(8)
    expect(Sqe.cmd).toBe(48)
    expect(Sqe.SIZE - Sqe.cmd).toBe(80)
  })
})

describe('an io_uring entry', () => {
  it('keeps its header, its iovecs and the longest request copy apart, and its payload page-aligned and 1 MiB long', () => {
    expect(IOVEC_AT).toBeGreaterThanOrEqual(UringReqHeader.SIZE)
    expect(IOVEC_AT + 32).toBeLessThanOrEqual(PAYLOAD_AT - InHeader.SIZE - 128) // op_in holds at most 128 bytes
    expect(PAYLOAD_AT % 4096).toBe(0)
    expect(ENTRY_SIZE % 4096).toBe(0)
    expect(PAYLOAD_SIZE).toBe(1024 * 1024)
  })

  it('numbers as a slot the session can hand between threads, the last of MAX_ENTRIES after 96 read(2) slots included', () => {
    const last = packSlot(96 + MAX_ENTRIES - 1, ENTRY_SIZE)
    expect(last).toBeLessThanOrEqual(0x7fffffff) // the rings hold int32s
    expect(slotOf(last)).toBe(96 + MAX_ENTRIES - 1)
    expect(lengthOf(last)).toBe(ENTRY_SIZE)
  })

  it('lays a request out as read(2) returns it: WRITE data right after fuse_write_in, a LOOKUP name right after the header', () => {
    expect(requestAt(Op.WRITE) + InHeader.SIZE + WriteIn.SIZE).toBe(PAYLOAD_AT)
    expect(requestAt(Op.LOOKUP) + InHeader.SIZE).toBe(PAYLOAD_AT)
    // A READ reply's header goes right before the payload, so its data lands in the payload.
    expect(PAYLOAD_AT - OutHeader.SIZE).toBeGreaterThan(requestAt(Op.SETATTR))
  })
})

describe('FCFS_RAWFUSE_URING', () => {
  it('is 1 (on), 0 (off) or auto, and off when unset', () => {
    expect(uringMode('1')).toBe('on')
    expect(uringMode('0')).toBe('off')
    expect(uringMode('auto')).toBe('auto')
    expect(uringMode(undefined)).toBe('off')
    expect(uringMode('')).toBe('off')
  })

  it('names itself and the bad value otherwise', () => {
    expect(() => uringMode('yes')).toThrow('FCFS_RAWFUSE_URING: must be 1 (FUSE over io_uring), 0 (read/write on /dev/fuse) or auto, got "yes"')
  })
})

describe('the kernel queue count', () => {
  it('is the number of possible CPUs, ranges and lists alike', () => {
    expect(possibleCpus('0-1\n')).toBe(2)
    expect(possibleCpus('0')).toBe(1)
    expect(possibleCpus('0-3,8-11,16\n')).toBe(9)
  })
})

describe('the native calls io_uring needs', () => {
  it('tell the address of a SharedArrayBuffer and of a view into it, the same on every call', () => {
    const n = native()
    const sab = new SharedArrayBuffer(8192)
    const a = n.addressOf(sab)
    expect(a).toBeGreaterThan(0n)
    expect(n.addressOf(sab)).toBe(a)
    expect(n.addressOf(new Uint8Array(sab, 100, 8)) - a).toBe(100n)
  })

  it('make an eventfd that counts what is written to it', () => {
    const fd = native().eventfd()
    expect(fd).toBeGreaterThan(2)
    try {
      writeSync(fd, Buffer.from([2, 0, 0, 0, 0, 0, 0, 0]))
      writeSync(fd, Buffer.from([3, 0, 0, 0, 0, 0, 0, 0]))
      const b = Buffer.alloc(8)
      expect(readSync(fd, b, 0, 8, null)).toBe(8)
      expect(b.readBigUInt64LE(0)).toBe(5n)
    } finally {
      closeSync(fd)
    }
  })
})
