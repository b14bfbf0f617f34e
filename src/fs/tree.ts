/**
 * The path tree of the mount. Every path maps to a node through one Map
 * lookup; directories keep their children's names in insertion order.
 *
 *   /wwn/<wwpn>/rwbuf              LUN 0
 *   /wwn/<wwpn>/info               the port
 *   /wwn/<wwpn>/lun/<n>/rwbuf      every LUN
 *   /wwn/<wwpn>/lun/<n>/q/<k>      k = 0..Q-1 (--queue-files Q): more rwbuf nodes of
 *                                  the same LUN. The kernel lets one write per inode
 *                                  through at a time, and each path is its own inode,
 *                                  so Q O_DIRECT writers on Q q files keep Q WRITEs
 *                                  in flight where one rwbuf keeps 1.
 *   /wwn/<wwpn>/lun/<n>/{info,sense,stats}
 *   /wwn/<wwpn>/lun/<n>/stats.json, /wwn/<wwpn>/stats[.json]
 *   /hba/<n>/{info,ring,stats,stats.json,link,trace,control}
 *   /hba/<n>/wwn/<wwpn>/…          HBA n's view, laid out as /wwn (docs/hosts.md): the ports
 *                                  its zones let it see, its LUNs under its masked numbers;
 *                                  /wwn is HBA 0's view (the same nodes as /hba/0/wwn)
 *   /fabric/{control,last_error,zones,masks}
 *   /server                        pid, mount facts, engine, every HBA (used by `fcfs umount`, `fcfs status`)
 */
import type { BlockDevice } from './blockdev.js'

/** q files per LUN unless --queue-files says otherwise, and the most it accepts. */
export const DEFAULT_QUEUE_FILES = 16
export const MAX_QUEUE_FILES = 256

export type Node =
  | { kind: 'dir'; path: string; children: string[] }
  | { kind: 'rwbuf'; path: string; dev: BlockDevice }
  | { kind: 'info'; path: string; render: () => string }
  /** A growing text file read at absolute offsets (the trace): open attaches a reader. */
  | {
      kind: 'stream'
      path: string
      size: () => number
      /** `cursor` is what attach() returned for this handle. */
      read: (buf: Buffer, len: number, pos: number, cursor: unknown) => number
      attach: () => unknown
      detach: () => void
    }
  /** A write-only control file: each write is one or more command lines; the result is the byte count or -errno. */
  | { kind: 'control'; path: string; help: string; write: (text: string) => number | Promise<number> }

export class Tree {
  private readonly nodes = new Map<string, Node>()

  constructor() {
    this.nodes.set('/', { kind: 'dir', path: '/', children: [] })
  }

  get(path: string): Node | undefined {
    return this.nodes.get(path)
  }

  /** Adds a file node, creating parent directories as needed. */
  add(node: Node): Node {
    if (this.nodes.has(node.path)) throw new Error(`path ${node.path} already exists`)
    this.ensureParents(node.path)
    this.nodes.set(node.path, node)
    return node
  }

  dir(path: string): Node {
    const existing = this.nodes.get(path)
    if (existing) return existing
    return this.add({ kind: 'dir', path, children: [] })
  }

  private ensureParents(path: string): void {
    const slash = path.lastIndexOf('/')
    const parentPath = slash === 0 ? '/' : path.slice(0, slash)
    const name = path.slice(slash + 1)
    let parent = this.nodes.get(parentPath)
    if (!parent) parent = this.dir(parentPath)
    if (parent.kind !== 'dir') throw new Error(`${parentPath} is not a directory`)
    parent.children.push(name)
  }

  /** Removes a node and everything under it. */
  remove(path: string): void {
    const node = this.nodes.get(path)
    if (!node || path === '/') return
    if (node.kind === 'dir') for (const c of [...node.children]) this.remove(path + '/' + c)
    this.nodes.delete(path)
    const slash = path.lastIndexOf('/')
    const parent = this.nodes.get(slash === 0 ? '/' : path.slice(0, slash))
    if (parent && parent.kind === 'dir') {
      const i = parent.children.indexOf(path.slice(slash + 1))
      if (i >= 0) parent.children.splice(i, 1)
    }
  }
}
