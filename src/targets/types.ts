import type { Backend } from './backend.js'
import type { WriteCache } from './write-cache.js'

/** One logical unit as a target port exports it: identity, geometry and the store. */
export interface Lun {
  /** LUN number on its port (0..255 in the flat addressing fcfs uses). */
  readonly lun: number
  readonly blockSize: 512 | 4096
  /** Capacity in logical blocks; backend.size === blocks * blockSize. */
  readonly blocks: number
  readonly backend: Backend
  /**
   * The unit's volatile write cache, when it has one ("writeCache": "volatile"): the same object
   * `backend` is (or wraps, once a fault filter is installed). Absent: writes go straight to the backend.
   */
  readonly writeCache?: WriteCache
  readonly vendor: string // INQUIRY T10 vendor id, ≤ 8 ASCII chars
  readonly product: string // ≤ 16 ASCII chars
  readonly revision: string // ≤ 4 ASCII chars
  readonly serial: string // unit serial number (VPD 0x80)
  /** NAA-5 16-hex-digit identifier of the logical unit itself (VPD 0x83): "5" + OUI + vendor specific. */
  readonly naa: string
  writeProtect: boolean
  /**
   * Bytes per physical block, a power-of-two multiple of blockSize (512e: 4096 over 512-byte
   * logical blocks). READ CAPACITY(16) reports the ratio; atomic writes align to it. Absent: blockSize.
   */
  readonly physicalBlockSize?: number
  /** WRITE SAME with NUMBER OF LOGICAL BLOCKS 0 writes to the last block (Block Limits WSNZ = 0). Absent: refused (WSNZ = 1). */
  readonly writeSameToEnd?: boolean
  /**
   * The medium is removable (INQUIRY RMB = 1): START STOP UNIT with LOEJ ejects and loads it,
   * PREVENT ALLOW MEDIUM REMOVAL can hold it in. Absent: fixed.
   */
  readonly removable?: boolean
  /** The least time a SANITIZE takes, in ms (a drive's takes minutes to hours): its work is spread over it. Absent: 0. */
  readonly sanitizeMs?: number
}

/** An FC target port on the fabric. */
export interface TargetPort {
  /** 16 lowercase hex digits, e.g. "2100001b32a1b2c3". */
  readonly wwpn: string
  readonly wwnn: string
  /** 24-bit FC port id (D_ID), e.g. 0x010200. */
  readonly portId: number
  /** The loop id / target handle the HBA addresses it by (0..125 on a loop, up to 2047 on a fabric). */
  readonly loopId: number
  /**
   * RELATIVE TARGET PORT IDENTIFIER (SPC-4 7.8.6.8, VPD 0x83 designator type 4,
   * REPORT TARGET PORT GROUPS): 1..65535, unique across the fabric, so every
   * path to a shared logical unit names a different port.
   */
  readonly relativePortId: number
  /**
   * TARGET PORT GROUP (designator type 5, REPORT TARGET PORT GROUPS): 0..65535.
   * Ports in one group share an ALUA access state; default 1 for every port.
   */
  readonly portGroup: number
  readonly luns: Map<number, Lun>
  /**
   * ALUA asymmetric access state of this port's group (SPC-4 5.16), as REPORT
   * TARGET PORT GROUPS reports it. Absent: active/optimized.
   */
  aluaState?: AluaState
  /**
   * LUN masking (targets/access.ts): initiator WWPN → the LUN number that
   * initiator addresses → this port's LUN. Absent: every initiator sees every
   * LUN under its own number. Replaced whole when the masks change.
   */
  access?: PortAccess
}

/** initiator WWPN → (LUN as the initiator addresses it → the port's LUN number). */
export type PortAccess = ReadonlyMap<string, ReadonlyMap<number, number>>

/** A host port (an HBA) on the fabric. */
export interface Initiator {
  /** What the config and the CLI call it ("hostA"). */
  readonly name: string
  readonly wwpn: string
  readonly wwnn: string
}

/** A zone of the name server: ports that may see each other (WWPNs). */
export interface Zone {
  readonly name: string
  readonly members: readonly string[]
}

/** SPC-4 asymmetric access states, as REPORT TARGET PORT GROUPS names them. */
export type AluaState = 'active/optimized' | 'active/non-optimized' | 'standby' | 'unavailable' | 'offline' | 'transitioning'

/** What the HBA's firmware sees when it logs into the fabric. */
export interface Fabric {
  readonly ports: TargetPort[]
  /** The host ports, in config order (HBA n is initiators[n]); absent: one HBA of the default names. */
  readonly initiators?: readonly Initiator[]
  /**
   * Zoning (targets/zoning.ts asks it for each initiator): absent or empty,
   * every initiator sees every target port; else only the ports it shares a
   * zone with. Replaced whole when the zones change.
   */
  zones?: readonly Zone[]
}
