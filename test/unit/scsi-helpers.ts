/** Shared fixtures for the scsi-*.test.ts files: a Lun over RAM, a port, and a synchronous command runner. */
import { expect } from 'vitest'
import type { Backend, IoResult, MaybeAsync } from '../../src/targets/backend.js'
import { RamBackend } from '../../src/targets/ram.js'
import type { Lun, TargetPort } from '../../src/targets/types.js'
import { LogicalUnit } from '../../src/scsi/lu.js'
import { decodeSense } from '../../src/scsi/sense.js'
import type { ScsiCommand, ScsiOutcome } from '../../src/scsi/types.js'

export const hex = (b: Uint8Array) => Buffer.from(b).toString('hex')

export function makeLun(over: Partial<Lun> & { backend?: Backend } = {}): Lun {
  const blockSize = over.blockSize ?? 512
  const blocks = over.blocks ?? 2048
  return {
    lun: 0,
    blockSize,
    blocks,
    backend: over.backend ?? new RamBackend(blocks * blockSize),
    vendor: 'FCFS',
    product: 'RAMDISK',
    revision: '0001',
    serial: 'SN1',
    naa: '50024ff000001000',
    writeProtect: false,
    ...over,
  }
}

export function makePort(luns: Lun[], over: Partial<TargetPort> = {}): TargetPort {
  return {
    wwpn: '21000024ff000001',
    wwnn: '20000024ff000001',
    portId: 0x010100,
    loopId: 1,
    relativePortId: 1,
    portGroup: 1,
    luns: new Map(luns.map((l) => [l.lun, l])),
    ...over,
  }
}

export interface Run extends ScsiOutcome {
  /** The data-in bytes moved. */
  data: Buffer
}

export type Executor = { execute(cmd: ScsiCommand, done: (o: ScsiOutcome) => void): void }

export interface RunOptions {
  dataIn?: number
  dataOut?: Buffer
  initiator?: string
  port?: TargetPort
}

/** A CDB builder from hex: raw('2a00…'). */
export function raw(bytes: string): (cdb: Buffer) => number {
  return (cdb) => Buffer.from(bytes.replace(/\s+/g, ''), 'hex').copy(cdb)
}

/** Runs a command that must complete synchronously (RAM backend); returns the outcome and the data-in bytes moved. */
export function run(dev: Executor, build: string | ((cdb: Buffer) => number), opts: RunOptions = {}): Run {
  const cdb = Buffer.alloc(16)
  ;(typeof build === 'string' ? raw(build) : build)(cdb)
  const dataIn = opts.dataIn !== undefined ? Buffer.alloc(opts.dataIn, 0xaa) : null
  let out: ScsiOutcome | undefined
  let calls = 0
  const cmd: ScsiCommand = { cdb, dataIn, dataOut: opts.dataOut ?? null, initiator: opts.initiator ?? 'init-a', ...(opts.port ? { port: opts.port } : {}) }
  dev.execute(cmd, (o) => {
    calls++
    out = o
  })
  expect(calls, 'done must be called exactly once, synchronously').toBe(1)
  return { ...out!, data: dataIn ? dataIn.subarray(0, out!.transferred) : Buffer.alloc(0) }
}

/** Runs a command that may complete asynchronously. */
export function runAsync(dev: Executor, build: string, opts: RunOptions = {}): Promise<Run> {
  const cdb = Buffer.alloc(16)
  raw(build)(cdb)
  const dataIn = opts.dataIn !== undefined ? Buffer.alloc(opts.dataIn, 0xaa) : null
  return new Promise((resolve) => {
    dev.execute({ cdb, dataIn, dataOut: opts.dataOut ?? null, initiator: opts.initiator ?? 'init-a' }, (o) =>
      resolve({ ...o, data: dataIn ? dataIn.subarray(0, o.transferred) : Buffer.alloc(0) }),
    )
  })
}

/** A LU that has already reported its power-on unit attention to `initiators` (default init-a). */
export function readyLu(lun = makeLun(), ...initiators: string[]): LogicalUnit {
  const lu = new LogicalUnit(lun)
  for (const i of initiators.length ? initiators : ['init-a']) run(lu, '000000000000', { initiator: i })
  return lu
}

/** The decoded sense of a CHECK CONDITION. */
export function sense(o: ScsiOutcome) {
  expect(o.status, 'CHECK CONDITION').toBe(2)
  return decodeSense(o.sense!)
}

/** A RAM backend that counts calls, and can answer with promises. */
export class CountingBackend implements Backend {
  readonly kind = 'counting'
  readonly inner: RamBackend
  flushes = 0
  writes = 0
  unmaps: Array<[number, number]> = []
  constructor(
    size: number,
    private readonly async = false,
  ) {
    this.inner = new RamBackend(size)
  }
  get size() {
    return this.inner.size
  }
  private answer(r: IoResult): MaybeAsync<IoResult> {
    return this.async ? Promise.resolve(r) : r
  }
  read(offset: number, dst: Buffer) {
    return this.answer(this.inner.read(offset, dst))
  }
  write(offset: number, src: Buffer) {
    this.writes++
    return this.answer(this.inner.write(offset, src))
  }
  flush() {
    this.flushes++
    return this.answer(null)
  }
  unmap(offset: number, length: number) {
    this.unmaps.push([offset, length])
    return this.answer(this.inner.unmap(offset, length))
  }
  allocatedBytes() {
    return this.inner.allocatedBytes()
  }
  close() {
    return this.inner.close()
  }
}
