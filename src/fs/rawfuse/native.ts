/**
 * The one module of fcfs that makes system calls Node cannot make by itself:
 * receiving a descriptor over a Unix socket (SCM_RIGHTS, how fusermount hands
 * back /dev/fuse), ioctl (FUSE_DEV_IOC_CLONE), mmap, and raw syscall(2) (io_uring).
 *
 * Through koffi, an FFI library whose npm package carries prebuilt binaries
 * (no compiler, no download at install), calling glibc directly. koffi is
 * loaded on first use, so a machine where it cannot load still runs every
 * other engine: native() throws a MountError whose message says why, for the
 * engine fallback's log line.
 *
 * Results follow the kernel's convention: a number ≥ 0, or -errno. Structures
 * are laid out for 64-bit Linux (LP64: x86_64, aarch64), checked at load.
 */
import { createRequire } from 'node:module'
import { constants as osConstants } from 'node:os'
import type * as KoffiModule from 'koffi'
import { MountError } from '../../errors.js'

type Koffi = typeof KoffiModule

/** FUSE_DEV_IOC_CLONE = _IOR(229, 0, uint32_t): makes a fresh /dev/fuse fd a clone of the session whose fd it is given. */
export const FUSE_DEV_IOC_CLONE = 0x8004e500

/** io_uring syscalls: one number on every architecture since Linux 5.1 (the unified table; alpha aside). */
export const SYS_io_uring_setup = 425
export const SYS_io_uring_enter = 426
export const SYS_io_uring_register = 427

export const PROT_READ = 0x1
export const PROT_WRITE = 0x2
export const MAP_SHARED = 0x01
export const MAP_PRIVATE = 0x02
export const MAP_POPULATE = 0x8000

const AF_UNIX = 1
const SOCK_STREAM = 1
const SOCK_CLOEXEC = 0o2000000
const SOL_SOCKET = 1
const SCM_RIGHTS = 1
const MSG_DONTWAIT = 0x40
const MSG_CMSG_CLOEXEC = 0x40000000
const O_CLOEXEC = 0o2000000

/** A mapping made by mmap(): `buffer` reads and writes the mapped memory itself (no copy). */
export interface Mapping {
  readonly address: bigint
  readonly length: number
  readonly buffer: ArrayBuffer
}

/** An argument of syscall(): an integer, or memory passed by its address. */
export type SyscallArg = number | bigint | Buffer | ArrayBufferView | ArrayBuffer

export interface Native {
  /** socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC): two connected sockets, or -errno. */
  socketpair(): [number, number] | number
  /**
   * Receives one descriptor sent with SCM_RIGHTS on `sock` (recvmsg,
   * MSG_CMSG_CLOEXEC), without blocking: the sender must have sent it already
   * (wait for fusermount to exit first). Returns the new fd, -EAGAIN when
   * nothing is queued, -ENODATA when a message came without a descriptor,
   * -ECONNRESET when the peer closed without sending anything.
   */
  recvFd(sock: number): number
  /** close(2): 0 or -errno. */
  close(fd: number): number
  /** ioctl(fd, request, &value) with a 32-bit int by pointer (FUSE_DEV_IOC_CLONE): the result or -errno. */
  ioctlInt(fd: number, request: number, value: number): number
  /** ioctl(fd, request, buf): the kernel reads and writes `buf` in place. The result or -errno. */
  ioctlBuffer(fd: number, request: number, buf: Buffer | ArrayBufferView): number
  /** mmap(NULL, length, prot, flags, fd, offset): the mapping, or -errno. */
  mmap(length: number, prot: number, flags: number, fd: number, offset?: number | bigint): Mapping | number
  /** munmap of a mapping from mmap(): 0 or -errno. Its buffer must not be touched afterwards. */
  munmap(m: Mapping): number
  /** syscall(nr, ...args) (at most 6 args): the result or -errno. */
  syscall(nr: number, ...args: SyscallArg[]): number
  /**
   * The address of a buffer's first byte, for structures the kernel reads
   * addresses from (iovecs, io_uring SQEs). Only stable for memory that never
   * moves: a SharedArrayBuffer's, or a Mapping's.
   */
  addressOf(buf: ArrayBufferView | SharedArrayBuffer): bigint
  /** eventfd(0, EFD_CLOEXEC): a new fd, or -errno. */
  eventfd(): number
  /**
   * read(2) into `buf` (at most buf.length bytes): the count, or -errno. Unlike
   * fs.readSync, a non-blocking fd's "nothing yet" is a value (-EAGAIN), not a
   * thrown error (which costs V8 microseconds each time).
   */
  read(fd: number, buf: ArrayBufferView): number
}

let loaded: Native | null = null
let failure: string | null = null

/**
 * The native calls, loaded on first use. Throws a MountError naming the reason
 * when they cannot be had here (koffi missing or broken, not 64-bit Linux).
 */
export function native(): Native {
  if (loaded) return loaded
  if (failure === null) {
    try {
      loaded = load()
      return loaded
    } catch (e) {
      failure = (e as Error).message
    }
  }
  throw new MountError(`native system calls unavailable: ${failure}`)
}

/** Why native() cannot work here, or null when it can (loads it to find out). */
export function nativeUnavailable(): string | null {
  try {
    native()
    return null
  } catch (e) {
    return (e as Error).message
  }
}

/** The errno name of a negative result (-9 → 'EBADF'), for messages. */
export function errnoName(result: number): string {
  const n = -result
  for (const [name, v] of Object.entries(osConstants.errno)) if (v === n) return name
  return `errno ${n}`
}

function load(): Native {
  if (process.platform !== 'linux') throw new Error(`needs Linux, this is ${process.platform}`)
  if (process.arch !== 'x64' && process.arch !== 'arm64') throw new Error(`struct layouts are written for 64-bit Linux (x64, arm64), this is ${process.arch}`)
  let koffi: Koffi
  try {
    koffi = createRequire(import.meta.url)('koffi') as Koffi
  } catch (e) {
    throw new Error(`the koffi module did not load (npm ci installs it): ${(e as Error).message.split('\n')[0]}`)
  }
  const libc = koffi.load('libc.so.6')
  const f = {
    socketpair: libc.func('int socketpair(int domain, int type, int protocol, _Out_ int *sv)'),
    recvmsg: libc.func('intptr_t recvmsg(int fd, void *msg, int flags)'),
    close: libc.func('int close(int fd)'),
    ioctl: libc.func('int ioctl(int fd, unsigned long request, ...)'),
    mmap: libc.func('void *mmap(void *addr, size_t length, int prot, int flags, int fd, int64_t offset)'),
    munmap: libc.func('int munmap(uintptr_t addr, size_t length)'),
    syscall: libc.func('long syscall(long number, ...)'),
    // memmove(p, p, 0) returns p: how koffi tells a buffer's address.
    memmove: libc.func('uintptr_t memmove(void *dst, void *src, size_t n)'),
    eventfd: libc.func('int eventfd(uint32_t initval, int flags)'),
    read: libc.func('intptr_t read(int fd, void *buf, size_t n)'),
  }
  const fail = (): number => -koffi.errno()

  // recvmsg's memory, native and reused (one call at a time per thread):
  //   msghdr 56 | iovec 16 | 1 data byte (pad to 8) | cmsg: CMSG_SPACE(4 * 8) = 48
  const MSG = 0, IOV = 56, DATA = 72, CMSG = 80, CMSG_SPACE = 48, SIZE = CMSG + CMSG_SPACE
  const mem = koffi.alloc('uint8_t', SIZE)
  const base = koffi.address(mem)
  const view = Buffer.from(koffi.view(mem, SIZE))

  return {
    socketpair() {
      const sv = [0, 0]
      return f.socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0 ? fail() : [sv[0], sv[1]]
    },
    recvFd(sock) {
      view.fill(0)
      view.writeBigUInt64LE(base + BigInt(IOV), MSG + 16) // msg_iov
      view.writeBigUInt64LE(1n, MSG + 24) // msg_iovlen
      view.writeBigUInt64LE(base + BigInt(CMSG), MSG + 32) // msg_control
      view.writeBigUInt64LE(BigInt(CMSG_SPACE), MSG + 40) // msg_controllen
      view.writeBigUInt64LE(base + BigInt(DATA), IOV) // iov_base
      view.writeBigUInt64LE(1n, IOV + 8) // iov_len
      const n = Number(f.recvmsg(sock, mem, MSG_DONTWAIT | MSG_CMSG_CLOEXEC))
      if (n < 0) return fail()
      const controllen = Number(view.readBigUInt64LE(MSG + 40))
      // cmsghdr: cmsg_len (size_t), cmsg_level, cmsg_type, then the fds (a sender may pass several: keep the first, close the rest).
      if (controllen >= 20 && view.readInt32LE(CMSG + 8) === SOL_SOCKET && view.readInt32LE(CMSG + 12) === SCM_RIGHTS) {
        const count = (Number(view.readBigUInt64LE(CMSG)) - 16) / 4
        for (let i = 1; i < count; i++) f.close(view.readInt32LE(CMSG + 16 + 4 * i))
        return view.readInt32LE(CMSG + 16)
      }
      return n === 0 ? -osConstants.errno.ECONNRESET : -osConstants.errno.ENODATA
    },
    close(fd) {
      return f.close(fd) < 0 ? fail() : 0
    },
    ioctlInt(fd, request, value) {
      const arg = Buffer.alloc(4)
      arg.writeInt32LE(value)
      const r = f.ioctl(fd, request, 'void *', arg) as number
      return r < 0 ? fail() : r
    },
    ioctlBuffer(fd, request, buf) {
      const r = f.ioctl(fd, request, 'void *', buf) as number
      return r < 0 ? fail() : r
    },
    mmap(length, prot, flags, fd, offset = 0) {
      const p = f.mmap(null, length, prot, flags, fd, offset)
      const address = p === null ? 0n : koffi.address(p)
      if (address === 0xffffffffffffffffn || address === 0n) return fail()
      return { address, length, buffer: koffi.view(p, length) }
    },
    munmap(m) {
      return f.munmap(m.address, m.length) < 0 ? fail() : 0
    },
    syscall(nr, ...args) {
      if (args.length > 6) throw new RangeError('syscall takes at most 6 arguments')
      const typed: unknown[] = []
      for (const a of args) typed.push(typeof a === 'number' || typeof a === 'bigint' ? 'long' : 'void *', a)
      const r = Number(f.syscall(nr, ...typed))
      return r < 0 ? fail() : r
    },
    addressOf(buf) {
      const view = ArrayBuffer.isView(buf) ? buf : new Uint8Array(buf)
      return BigInt(f.memmove(view, view, 0) as number)
    },
    eventfd() {
      const fd = f.eventfd(0, O_CLOEXEC) as number
      return fd < 0 ? fail() : fd
    },
    read(fd, buf) {
      const n = Number(f.read(fd, buf, buf.byteLength))
      return n < 0 ? fail() : n
    },
  }
}
