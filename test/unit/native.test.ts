// The native calls module (src/fs/rawfuse/native.ts): the system calls Node
// cannot make — receiving a descriptor (SCM_RIGHTS), ioctl, mmap, syscall —
// made for real against the kernel, with results as numbers or -errno.
import { afterEach, describe, expect, it } from 'vitest'
import { execFileSync, spawn } from 'node:child_process'
import { closeSync, mkdtempSync, openSync, readSync, rmSync, writeFileSync, writeSync, readFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { constants as os } from 'node:os'
import { constants as fs } from 'node:fs'
import {
  errnoName, FUSE_DEV_IOC_CLONE, MAP_SHARED, native, nativeUnavailable, PROT_READ, PROT_WRITE, SYS_io_uring_setup,
} from '../../src/fs/rawfuse/native.js'

const n = native()
const toClose: number[] = []
let dir = ''
afterEach(() => {
  for (const fd of toClose.splice(0)) n.close(fd)
  if (dir) rmSync(dir, { recursive: true, force: true })
  dir = ''
})

/** Runs python3 with `sock` as its fd 3 and waits for it to exit. */
function python(code: string, sock: number): Promise<{ code: number; stderr: string }> {
  return new Promise((resolve) => {
    const c = spawn('python3', ['-c', code], { stdio: ['ignore', 'ignore', 'pipe', sock] })
    let stderr = ''
    c.stderr!.setEncoding('utf8').on('data', (s: string) => (stderr += s))
    c.on('close', (code) => resolve({ code: code ?? 1, stderr }))
  })
}

function pair(): [number, number] {
  const sv = n.socketpair()
  if (typeof sv === 'number') throw new Error(`socketpair: ${errnoName(sv)}`)
  toClose.push(...sv)
  return sv
}

describe('native system calls', () => {
  it('load here, with no reason to fall back', () => {
    expect(nativeUnavailable()).toBeNull()
  })

  it('receive a descriptor a child sent over a socketpair with SCM_RIGHTS, and read the file through it', async () => {
    dir = mkdtempSync(join(tmpdir(), 'fcfs-native-'))
    const file = join(dir, 'secret')
    writeFileSync(file, 'bytes behind a passed descriptor\n')
    const [ours, theirs] = pair()
    // As fusermount does: open the file, send its fd with one data byte, exit.
    const r = await python(
      `import os, socket\ns = socket.socket(fileno=3)\nfd = os.open(${JSON.stringify(file)}, os.O_RDONLY)\nsocket.send_fds(s, [b'\\0'], [fd])\n`,
      theirs,
    )
    expect(r).toEqual({ code: 0, stderr: '' })
    const fd = n.recvFd(ours)
    expect(fd).toBeGreaterThan(2)
    toClose.push(fd)
    const buf = Buffer.alloc(64)
    const got = readSync(fd, buf, 0, 64, 0)
    expect(buf.subarray(0, got).toString()).toBe('bytes behind a passed descriptor\n')
  })

  it('receive nothing without blocking: EAGAIN while nothing is queued, ENODATA for a message without a descriptor, ECONNRESET once the peer closed', async () => {
    const [ours, theirs] = pair()
    expect(errnoName(n.recvFd(ours))).toBe('EAGAIN')
    expect(await python(`import socket\ns = socket.socket(fileno=3)\ns.send(b'x')\n`, theirs)).toEqual({ code: 0, stderr: '' })
    expect(errnoName(n.recvFd(ours))).toBe('ENODATA')
    n.close(theirs)
    toClose.splice(toClose.indexOf(theirs), 1)
    expect(errnoName(n.recvFd(ours))).toBe('ECONNRESET')
  })

  it('read without throwing: EPERM from a /dev/fuse nobody mounted, EAGAIN as a value from an empty non-blocking FIFO, then the byte count into a shared buffer, EBADF for a closed descriptor', () => {
    // A /dev/fuse nobody mounted: the kernel answers at once instead of blocking (EPERM: no connection yet).
    const fuse = openSync('/dev/fuse', fs.O_RDWR | fs.O_NONBLOCK)
    toClose.push(fuse)
    const buf = Buffer.from(new SharedArrayBuffer(8192))
    expect(errnoName(n.read(fuse, buf))).toBe('EPERM')
    // A non-blocking FIFO with nothing queued: EAGAIN as a value, then the bytes written.
    dir = mkdtempSync(join(tmpdir(), 'fcfs-native-'))
    execFileSync('mkfifo', [join(dir, 'p')])
    const nb = openSync(join(dir, 'p'), fs.O_RDWR | fs.O_NONBLOCK)
    toClose.push(nb)
    expect(errnoName(n.read(nb, buf))).toBe('EAGAIN')
    writeSync(nb, 'hello')
    expect(n.read(nb, buf.subarray(0, 3))).toBe(3)
    expect(buf.toString('latin1', 0, 3)).toBe('hel')
    expect(errnoName(n.read(-1, buf))).toBe('EBADF')
  })

  it('give EBADF for an ioctl and a close on a descriptor that is not open', () => {
    expect(errnoName(n.ioctlInt(987654, FUSE_DEV_IOC_CLONE, 3))).toBe('EBADF')
    expect(errnoName(n.ioctlBuffer(987654, FUSE_DEV_IOC_CLONE, Buffer.alloc(4)))).toBe('EBADF')
    expect(n.close(987654)).toBe(-os.errno.EBADF)
  })

  it('give ENOTTY for FUSE_DEV_IOC_CLONE on a descriptor that is not /dev/fuse', () => {
    dir = mkdtempSync(join(tmpdir(), 'fcfs-native-'))
    const fd = openSync(join(dir, 'f'), 'w')
    try {
      expect(errnoName(n.ioctlInt(fd, FUSE_DEV_IOC_CLONE, fd))).toBe('ENOTTY')
    } finally {
      closeSync(fd)
    }
  })

  it('map a file shared: its bytes are readable through the buffer and a write through it reaches the file', () => {
    dir = mkdtempSync(join(tmpdir(), 'fcfs-native-'))
    const file = join(dir, 'mapped')
    writeFileSync(file, Buffer.concat([Buffer.from('mapped bytes'), Buffer.alloc(4096 - 12)]))
    const fd = openSync(file, 'r+')
    try {
      const m = n.mmap(4096, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0)
      if (typeof m === 'number') throw new Error(`mmap: ${errnoName(m)}`)
      expect(m.length).toBe(4096)
      expect(m.buffer.byteLength).toBe(4096)
      const view = Buffer.from(m.buffer)
      expect(view.subarray(0, 12).toString()).toBe('mapped bytes')
      view.write('MAPPED', 0)
      expect(n.munmap(m)).toBe(0)
      expect(readFileSync(file).subarray(0, 12).toString()).toBe('MAPPED bytes')
    } finally {
      closeSync(fd)
    }
  })

  it('give EBADF for a shared mapping of a descriptor that is not open, and EINVAL for a zero length', () => {
    expect(errnoName(n.mmap(4096, PROT_READ, MAP_SHARED, 987654) as number)).toBe('EBADF')
    expect(errnoName(n.mmap(0, PROT_READ, MAP_SHARED, 0) as number)).toBe('EINVAL')
  })

  it('make raw system calls: io_uring_setup fills its params and returns a descriptor, and refuses zero entries with EINVAL', () => {
    // struct io_uring_params is 120 bytes: sq_entries @0, cq_entries @4 (twice the SQ by default).
    const params = Buffer.alloc(120)
    expect(errnoName(n.syscall(SYS_io_uring_setup, 0, params))).toBe('EINVAL')
    const fd = n.syscall(SYS_io_uring_setup, 8, params)
    if (fd === -os.errno.ENOSYS || fd === -os.errno.EPERM) throw new Error(`io_uring is off on this kernel: ${errnoName(fd)}`)
    expect(fd).toBeGreaterThan(2)
    toClose.push(fd)
    expect([params.readUInt32LE(0), params.readUInt32LE(4)]).toEqual([8, 16])
  })
})
