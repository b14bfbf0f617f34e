/**
 * An io_uring worker thread of FUSE over io_uring (see uring.ts): the only
 * thread that submits to its ring, so the kernel hands requests to its
 * entries in this thread's context. The loop:
 *
 *   queue COMMIT_AND_FETCH for each answer the main thread left on `commits`
 *   take every completion: a request in entry e → copy its header and op
 *     struct before the payload, push slot (slotBase + e) on `inbox` and flag
 *     the main thread's `wake` (as reader.ts does); the eventfd READ → re-arm it
 *   nothing to do → STATE = SLEEPING, look at `commits` once more, then one
 *     io_uring_enter that submits what is queued and waits for a completion.
 *
 * The main thread writes the eventfd only when it turns STATE from SLEEPING to
 * KICKED, so a busy worker costs it no system call.
 */
import { parentPort, receiveMessageOnPort, workerData } from 'node:worker_threads'
import { errnoName, MAP_POPULATE, MAP_SHARED, native, PROT_READ, PROT_WRITE, SYS_io_uring_enter, type Mapping } from './native.js'
import { InHeader } from './protocol.js'
import { SharedRing } from './ring.js'
import { lengthOf, packSlot, slotOf } from './slots.js'
import {
  Cqe, CqringOffsets, Ctl, ENTRY_SIZE, Go, IOVEC_AT, IoUring, IoUringParams, PAYLOAD_AT, PAYLOAD_SIZE, requestAt,
  opInSize, Sqe, SqringOffsets, State, UringCmd, UringCmdReq, UringEntInOut, UringReqHeader, type UringAttach, type UringWorkerData,
} from './uring.js'

const d = workerData as UringWorkerData
const n = native()
const ctl = new Int32Array(d.ctl)
const inbox = new SharedRing(d.inbox)
const commits = new SharedRing(d.commits)
/** Set by the session's attach() (read when serving starts). */
let wake = new Int32Array(new SharedArrayBuffer(4))
let slotBase = 0
const EVENT = 0xffffffff
const OUT_HEADER = 16

function mapOrThrow(length: number, offset: number): Mapping {
  const m = n.mmap(length, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, d.ringFd, offset)
  if (typeof m === 'number') throw new Error(`mmap of the io_uring (offset ${offset.toString(16)}) failed: ${errnoName(m)}`)
  return m
}

// ---- the rings ----
const params = Buffer.from(d.params)
const sqEntries = params.readUInt32LE(IoUringParams.sq_entries)
const cqEntries = params.readUInt32LE(IoUringParams.cq_entries)
const sqOff = (f: number): number => params.readUInt32LE(IoUringParams.sq_off + f)
const cqOff = (f: number): number => params.readUInt32LE(IoUringParams.cq_off + f)
const sqSize = sqOff(SqringOffsets.array) + sqEntries * 4
const cqSize = cqOff(CqringOffsets.cqes) + cqEntries * Cqe.SIZE
const single = (params.readUInt32LE(IoUringParams.features) & IoUring.FEAT_SINGLE_MMAP) !== 0

let sq: Int32Array, cq: Int32Array, cqes: Buffer, sqes: Buffer
try {
  const sqMap = mapOrThrow(single ? Math.max(sqSize, cqSize) : sqSize, IoUring.OFF_SQ_RING)
  const cqMap = single ? sqMap : mapOrThrow(cqSize, IoUring.OFF_CQ_RING)
  sq = new Int32Array(sqMap.buffer)
  cq = new Int32Array(cqMap.buffer)
  cqes = Buffer.from(cqMap.buffer, cqOff(CqringOffsets.cqes), cqEntries * Cqe.SIZE)
  sqes = Buffer.from(mapOrThrow(sqEntries * Sqe.SIZE, IoUring.OFF_SQES).buffer)
} catch (e) {
  parentPort!.postMessage({ error: (e as Error).message })
  process.exit(0)
}
const SQ_TAIL = sqOff(SqringOffsets.tail) / 4
const SQ_MASK = sq[sqOff(SqringOffsets.ring_mask) / 4]
const SQ_ARRAY = sqOff(SqringOffsets.array) / 4
const CQ_HEAD = cqOff(CqringOffsets.head) / 4
const CQ_TAIL = cqOff(CqringOffsets.tail) / 4
const CQ_MASK = cq[cqOff(CqringOffsets.ring_mask) / 4]
for (let i = 0; i < sqEntries; i++) sq[SQ_ARRAY + i] = i // SQE i at ring index i, always
let sqTail = Atomics.load(sq, SQ_TAIL)
let cqHead = Atomics.load(cq, CQ_HEAD)
let unsubmitted = 0
/** Requests handed to the main thread and not answered yet. */
let outstanding = 0
/** How long to keep looking for the main thread's answer before sleeping (ms; see UringWorkerData.spinUs). */
const SPIN_MS = d.spinUs / 1000
/**
 * Whether to spin: off after a spin that saw no answer in time (the main
 * thread is slow, or the CPUs are busy: spinning would only take CPU from
 * it), back on once an answer comes within SPIN_MS of going to sleep.
 */
let spinNext = true

// ---- the entries: global index e = d.first + i ----
const headers: Buffer[] = []
const commitIds: bigint[] = []
const qidOf: number[] = []
for (let i = 0; i < d.count; i++) {
  const e = d.first + i
  const h = Buffer.from(d.memory, d.base + e * ENTRY_SIZE, PAYLOAD_AT)
  const at = d.address + BigInt(e * ENTRY_SIZE)
  h.writeBigUInt64LE(at, IOVEC_AT) // iov[0]: fuse_uring_req_header
  h.writeBigUInt64LE(BigInt(UringReqHeader.SIZE), IOVEC_AT + 8)
  h.writeBigUInt64LE(at + BigInt(PAYLOAD_AT), IOVEC_AT + 16) // iov[1]: the payload
  h.writeBigUInt64LE(BigInt(PAYLOAD_SIZE), IOVEC_AT + 24)
  headers.push(h)
  commitIds.push(0n)
  qidOf.push(d.qids[Math.floor(i / d.depth)])
}
const ENT = UringReqHeader.ring_ent_in_out

function nextSqe(): Buffer {
  const i = sqTail & SQ_MASK
  const s = sqes.subarray(i * Sqe.SIZE, (i + 1) * Sqe.SIZE)
  s.fill(0)
  return s
}
function pushSqe(): void {
  sqTail = (sqTail + 1) | 0
  Atomics.store(sq, SQ_TAIL, sqTail)
  unsubmitted++
}

/** REGISTER (cmd REGISTER, iovec) or COMMIT_AND_FETCH (commit id) for entry i of this worker. */
function entryCmd(i: number, cmd: number): void {
  const s = nextSqe()
  s[Sqe.opcode] = IoUring.OP_URING_CMD
  s.writeInt32LE(d.fuseFd, Sqe.fd)
  s.writeUInt32LE(cmd, Sqe.cmd_op)
  if (cmd === UringCmd.REGISTER) {
    s.writeBigUInt64LE(d.address + BigInt((d.first + i) * ENTRY_SIZE + IOVEC_AT), Sqe.addr)
    s.writeUInt32LE(2, Sqe.len)
  } else {
    s.writeBigUInt64LE(commitIds[i], Sqe.cmd + UringCmdReq.commit_id)
  }
  s.writeBigUInt64LE(BigInt(i), Sqe.user_data)
  s.writeUInt16LE(qidOf[i], Sqe.cmd + UringCmdReq.qid)
  pushSqe()
}

/** An 8-byte READ of the eventfd: completes when the main thread kicks us. */
function armEvent(): void {
  const s = nextSqe()
  s[Sqe.opcode] = IoUring.OP_READ
  s.writeInt32LE(d.eventFd, Sqe.fd)
  s.writeBigUInt64LE(d.ctlAddress + BigInt(Ctl.EVENT_AT), Sqe.addr)
  s.writeUInt32LE(8, Sqe.len)
  s.writeBigUInt64LE(0xffffffffffffffffn, Sqe.off) // the file's position (an eventfd has none)
  s.writeBigUInt64LE(BigInt(EVENT), Sqe.user_data)
  pushSqe()
}

/** io_uring_enter: submits what is queued, and waits for `wait` completions. Returns -errno on failure. */
function enter(wait: number): number {
  for (;;) {
    const r = n.syscall(SYS_io_uring_enter, d.ringFd, unsubmitted, wait, wait > 0 ? IoUring.ENTER_GETEVENTS : 0, 0, 0)
    if (r >= 0) {
      unsubmitted -= r
      return r
    }
    if (r !== -4) return r // EINTR: again
  }
}

// The answers from the main thread: out header into in_out, payload size, then COMMIT_AND_FETCH.
function takeCommits(): boolean {
  let any = false
  for (let m = commits.pop(); m >= 0; m = commits.pop()) {
    const i = slotOf(m) - d.first
    const h = headers[i]
    h.copy(h, UringReqHeader.in_out, PAYLOAD_AT - OUT_HEADER, PAYLOAD_AT)
    h.writeUInt32LE(lengthOf(m) - OUT_HEADER, ENT + UringEntInOut.payload_sz)
    entryCmd(i, UringCmd.COMMIT_AND_FETCH)
    outstanding--
    any = true
  }
  return any
}

let registered = false
let dead = 0
/** Every completion waiting: returns how many. */
function reap(): number {
  const tail = Atomics.load(cq, CQ_TAIL)
  let got = 0
  let queued = false
  while (cqHead !== tail) {
    const c = (cqHead & CQ_MASK) * Cqe.SIZE
    const user = Number(cqes.readBigUInt64LE(c + Cqe.user_data))
    const res = cqes.readInt32LE(c + Cqe.res)
    cqHead = (cqHead + 1) | 0
    got++
    if (user === EVENT) {
      if (Atomics.load(ctl, Ctl.GO) !== Go.STOP) armEvent()
      continue
    }
    if (res === 0) {
      // A request: make it contiguous before the payload, as read(2) would have returned it.
      const h = headers[user]
      commitIds[user] = h.readBigUInt64LE(ENT + UringEntInOut.commit_id)
      const opcode = h.readUInt32LE(InHeader.opcode)
      const at = requestAt(opcode)
      h.copy(h, at, UringReqHeader.in_out, InHeader.SIZE)
      h.copy(h, at + InHeader.SIZE, UringReqHeader.op_in, UringReqHeader.op_in + opInSize(opcode))
      inbox.push(packSlot(slotBase + d.first + user, InHeader.SIZE + opInSize(opcode) + h.readUInt32LE(ENT + UringEntInOut.payload_sz)))
      outstanding++
      queued = true
    } else if (res === -11 || res === -4) {
      // EAGAIN, EINTR: the command did not take; again (REGISTER before INIT is done says EAGAIN).
      entryCmd(user, registered ? UringCmd.COMMIT_AND_FETCH : UringCmd.REGISTER)
    } else {
      // ENOTCONN/ECANCELED: the connection is ending. Anything else: the entry is lost; say so.
      if (!registered) Atomics.compareExchange(ctl, Ctl.RESULT, 0, res)
      else if (res !== -107 && res !== -125) parentPort!.postMessage({ error: `entry ${d.first + user}: ${errnoName(res)}` })
      dead++
    }
  }
  Atomics.store(cq, CQ_HEAD, cqHead)
  if (queued && Atomics.compareExchange(wake, 0, 0, 1) === 0) Atomics.notify(wake, 0)
  return got
}

parentPort!.postMessage({ prepared: true })
while (Atomics.load(ctl, Ctl.GO) === Go.WAIT) Atomics.wait(ctl, Ctl.GO, Go.WAIT)

const attached = receiveMessageOnPort(parentPort!)?.message as UringAttach | undefined
if (Atomics.load(ctl, Ctl.GO) === Go.SERVE && attached) {
  wake = new Int32Array(attached.wake)
  slotBase = attached.slotBase
  for (let i = 0; i < d.count; i++) entryCmd(i, UringCmd.REGISTER)
  armEvent()
  // A refused REGISTER completes at once (and the kernel stays with /dev/fuse); an accepted
  // one completes when a request comes. EAGAIN (INIT not processed yet) is queued again by reap().
  for (let tries = 0; unsubmitted > 0 && tries < 1000; tries++) {
    const r = enter(0)
    if (r < 0) Atomics.compareExchange(ctl, Ctl.RESULT, 0, r)
    reap()
    if (unsubmitted > 0) Atomics.wait(ctl, Ctl.STATE, State.AWAKE, 1) // 1 ms
  }
  registered = true
  Atomics.compareExchange(ctl, Ctl.RESULT, 0, unsubmitted > 0 ? -11 : 1)
  parentPort!.postMessage({ registered: Atomics.load(ctl, Ctl.RESULT) })

  while (Atomics.load(ctl, Ctl.GO) === Go.SERVE && dead < d.count) {
    takeCommits()
    reap()
    if (outstanding > 0 && SPIN_MS > 0 && spinNext) {
      // The main thread is on its answers: send what is queued, and look for them a little
      // before sleeping (waking this thread again costs the main thread an eventfd write
      // and the answer a halted vCPU's wake-up).
      if (unsubmitted > 0) enter(0)
      const until = performance.now() + SPIN_MS
      while (commits.empty && Atomics.load(cq, CQ_TAIL) === cqHead && performance.now() < until);
      if (!commits.empty || Atomics.load(cq, CQ_TAIL) !== cqHead) continue
      spinNext = false
    }
    Atomics.store(ctl, Ctl.STATE, State.SLEEPING)
    if (!commits.empty || Atomics.load(ctl, Ctl.GO) !== Go.SERVE) {
      Atomics.store(ctl, Ctl.STATE, State.AWAKE)
      continue
    }
    // Submits the commits queued above and sleeps until a completion (returns at once if one is waiting).
    const slept = SPIN_MS > 0 && outstanding > 0 ? performance.now() : 0
    const w = enter(1)
    Atomics.store(ctl, Ctl.STATE, State.AWAKE)
    if (slept > 0 && !commits.empty && performance.now() - slept < SPIN_MS) spinNext = true
    if (w < 0 && w !== -16 && w !== -11) {
      parentPort!.postMessage({ error: `io_uring_enter: ${errnoName(w)}` })
      break
    }
  }
}
process.exit(0)
