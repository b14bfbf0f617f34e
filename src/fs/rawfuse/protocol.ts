/**
 * The FUSE kernel protocol: one layout table per struct, the
 * opcode table and the flag bits fcfs uses. Facts from the Linux UAPI header
 * include/uapi/linux/fuse.h (protocol 7.45 in kernel 6.18; we answer 7.38 and
 * use nothing newer). All fields are little-endian (x86/arm64 hosts) and
 * every struct is 8-byte aligned; a request is
 *
 *   fuse_in_header (40) | op-specific *_in struct | payload (names, write data)
 *
 * and a reply is
 *
 *   fuse_out_header (16) | op-specific *_out struct or data
 *
 * Each struct is a Layout (util/layout.ts: name, size, named fields that tile
 * it, reserved and padding words included), and test/unit/layouts.test.ts
 * checks that fields fit and do not overlap. The session reads requests per
 * I/O through the flat records beside each (`InHeader.opcode` is the offset
 * itself, `InHeader.SIZE` the struct's size), built once from the table.
 */
import { f, offsets, type Layout } from '../../util/layout.js'

export const FUSE_KERNEL_VERSION = 7
/** The minor version fcfs speaks: INIT flags2, max_pages, FOPEN_PARALLEL_DIRECT_WRITES all exist by 7.38. */
export const FUSE_KERNEL_MINOR = 38
export const ROOT_ID = 1

/** struct fuse_in_header */
export const IN_HEADER = {
  name: 'fuse_in_header',
  size: 40,
  fields: {
    len: f(0, 4), opcode: f(4, 4), unique: f(8, 8), nodeid: f(16, 8), uid: f(24, 4), gid: f(28, 4), pid: f(32, 4),
    total_extlen: f(36, 2), padding: f(38, 2),
  },
} as const satisfies Layout
export const InHeader = offsets(IN_HEADER)
/** struct fuse_out_header; error is a negative errno or 0 */
export const OUT_HEADER = {
  name: 'fuse_out_header',
  size: 16,
  fields: {
    len: f(0, 4), error: f(4, 4), unique: f(8, 8),
  },
} as const satisfies Layout
export const OutHeader = offsets(OUT_HEADER)
/** struct fuse_init_in (the 7.36+ form with flags2) */
export const INIT_IN = {
  name: 'fuse_init_in',
  size: 64,
  fields: {
    major: f(0, 4), minor: f(4, 4), max_readahead: f(8, 4), flags: f(12, 4), flags2: f(16, 4), unused: f(20, 44),
  },
} as const satisfies Layout
export const InitIn = offsets(INIT_IN)
/** struct fuse_init_out */
export const INIT_OUT = {
  name: 'fuse_init_out',
  size: 64,
  fields: {
    major: f(0, 4), minor: f(4, 4), max_readahead: f(8, 4), flags: f(12, 4), max_background: f(16, 2),
    congestion_threshold: f(18, 2), max_write: f(20, 4), time_gran: f(24, 4), max_pages: f(28, 2),
    map_alignment: f(30, 2), flags2: f(32, 4), max_stack_depth: f(36, 4), request_timeout: f(40, 2), unused: f(42, 22),
  },
} as const satisfies Layout
export const InitOut = offsets(INIT_OUT)
/** struct fuse_attr */
export const ATTR = {
  name: 'fuse_attr',
  size: 88,
  fields: {
    ino: f(0, 8), size: f(8, 8), blocks: f(16, 8), atime: f(24, 8), mtime: f(32, 8), ctime: f(40, 8),
    atimensec: f(48, 4), mtimensec: f(52, 4), ctimensec: f(56, 4), mode: f(60, 4), nlink: f(64, 4), uid: f(68, 4),
    gid: f(72, 4), rdev: f(76, 4), blksize: f(80, 4), flags: f(84, 4),
  },
} as const satisfies Layout
export const Attr = offsets(ATTR)
/** struct fuse_entry_out: LOOKUP's answer (attr embedded) */
export const ENTRY_OUT = {
  name: 'fuse_entry_out',
  size: 40 + ATTR.size,
  fields: {
    nodeid: f(0, 8), generation: f(8, 8), entry_valid: f(16, 8), attr_valid: f(24, 8), entry_valid_nsec: f(32, 4),
    attr_valid_nsec: f(36, 4), attr: f(40, ATTR.size),
  },
} as const satisfies Layout
export const EntryOut = offsets(ENTRY_OUT)
/** struct fuse_attr_out: GETATTR / SETATTR's answer */
export const ATTR_OUT = {
  name: 'fuse_attr_out',
  size: 16 + ATTR.size,
  fields: {
    attr_valid: f(0, 8), attr_valid_nsec: f(8, 4), dummy: f(12, 4), attr: f(16, ATTR.size),
  },
} as const satisfies Layout
export const AttrOut = offsets(ATTR_OUT)
/** struct fuse_getattr_in */
export const GETATTR_IN = {
  name: 'fuse_getattr_in',
  size: 16,
  fields: {
    getattr_flags: f(0, 4), dummy: f(4, 4), fh: f(8, 8),
  },
} as const satisfies Layout
export const GetattrIn = offsets(GETATTR_IN)
/** struct fuse_setattr_in */
export const SETATTR_IN = {
  name: 'fuse_setattr_in',
  size: 88,
  fields: {
    valid: f(0, 4), padding: f(4, 4), fh: f(8, 8), size: f(16, 8), lock_owner: f(24, 8), atime: f(32, 8),
    mtime: f(40, 8), ctime: f(48, 8), atimensec: f(56, 4), mtimensec: f(60, 4), ctimensec: f(64, 4), mode: f(68, 4),
    unused4: f(72, 4), uid: f(76, 4), gid: f(80, 4), unused5: f(84, 4),
  },
} as const satisfies Layout
export const SetattrIn = offsets(SETATTR_IN)
/** struct fuse_open_in (OPEN, OPENDIR) */
export const OPEN_IN = {
  name: 'fuse_open_in',
  size: 8,
  fields: {
    flags: f(0, 4), open_flags: f(4, 4),
  },
} as const satisfies Layout
export const OpenIn = offsets(OPEN_IN)
/** struct fuse_open_out */
export const OPEN_OUT = {
  name: 'fuse_open_out',
  size: 16,
  fields: {
    fh: f(0, 8), open_flags: f(8, 4), backing_id: f(12, 4),
  },
} as const satisfies Layout
export const OpenOut = offsets(OPEN_OUT)
/** struct fuse_read_in (READ, READDIR) */
export const READ_IN = {
  name: 'fuse_read_in',
  size: 40,
  fields: {
    fh: f(0, 8), offset: f(8, 8), size: f(16, 4), read_flags: f(20, 4), lock_owner: f(24, 8), flags: f(32, 4),
    padding: f(36, 4),
  },
} as const satisfies Layout
export const ReadIn = offsets(READ_IN)
/** struct fuse_write_in; the data follows it */
export const WRITE_IN = {
  name: 'fuse_write_in',
  size: 40,
  fields: {
    fh: f(0, 8), offset: f(8, 8), size: f(16, 4), write_flags: f(20, 4), lock_owner: f(24, 8), flags: f(32, 4),
    padding: f(36, 4),
  },
} as const satisfies Layout
export const WriteIn = offsets(WRITE_IN)
/** struct fuse_write_out */
export const WRITE_OUT = {
  name: 'fuse_write_out',
  size: 8,
  fields: {
    size: f(0, 4), padding: f(4, 4),
  },
} as const satisfies Layout
export const WriteOut = offsets(WRITE_OUT)
/** struct fuse_release_in (RELEASE, RELEASEDIR) */
export const RELEASE_IN = {
  name: 'fuse_release_in',
  size: 24,
  fields: {
    fh: f(0, 8), flags: f(8, 4), release_flags: f(12, 4), lock_owner: f(16, 8),
  },
} as const satisfies Layout
export const ReleaseIn = offsets(RELEASE_IN)
/** struct fuse_flush_in */
export const FLUSH_IN = {
  name: 'fuse_flush_in',
  size: 24,
  fields: {
    fh: f(0, 8), unused: f(8, 4), padding: f(12, 4), lock_owner: f(16, 8),
  },
} as const satisfies Layout
export const FlushIn = offsets(FLUSH_IN)
/** struct fuse_fsync_in; fsync_flags bit 0 = datasync */
export const FSYNC_IN = {
  name: 'fuse_fsync_in',
  size: 16,
  fields: {
    fh: f(0, 8), fsync_flags: f(8, 4), padding: f(12, 4),
  },
} as const satisfies Layout
export const FsyncIn = offsets(FSYNC_IN)
/** struct fuse_access_in */
export const ACCESS_IN = {
  name: 'fuse_access_in',
  size: 8,
  fields: {
    mask: f(0, 4), padding: f(4, 4),
  },
} as const satisfies Layout
export const AccessIn = offsets(ACCESS_IN)
/** struct fuse_kstatfs inside fuse_statfs_out */
export const STATFS_OUT = {
  name: 'fuse_kstatfs',
  size: 80,
  fields: {
    blocks: f(0, 8), bfree: f(8, 8), bavail: f(16, 8), files: f(24, 8), ffree: f(32, 8), bsize: f(40, 4),
    namelen: f(44, 4), frsize: f(48, 4), padding: f(52, 4), spare: f(56, 24),
  },
} as const satisfies Layout
export const StatfsOut = offsets(STATFS_OUT)
/** struct fuse_dirent; name follows, the record is padded to 8 bytes */
export const DIRENT = {
  name: 'fuse_dirent',
  size: 24,
  fields: {
    ino: f(0, 8), off: f(8, 8), namelen: f(16, 4), type: f(20, 4),
  },
} as const satisfies Layout
export const Dirent = { ...offsets(DIRENT), name: DIRENT.size }
/** struct fuse_forget_in */
export const FORGET_IN = {
  name: 'fuse_forget_in',
  size: 8,
  fields: {
    nlookup: f(0, 8),
  },
} as const satisfies Layout
export const ForgetIn = offsets(FORGET_IN)
/** struct fuse_batch_forget_in; `count` fuse_forget_one records follow */
export const BATCH_FORGET_IN = {
  name: 'fuse_batch_forget_in',
  size: 8,
  fields: {
    count: f(0, 4), dummy: f(4, 4),
  },
} as const satisfies Layout
export const BatchForgetIn = offsets(BATCH_FORGET_IN)
/** struct fuse_forget_one */
export const FORGET_ONE = {
  name: 'fuse_forget_one',
  size: 16,
  fields: {
    nodeid: f(0, 8), nlookup: f(8, 8),
  },
} as const satisfies Layout
export const ForgetOne = offsets(FORGET_ONE)

/** struct fuse_notify_inval_entry_out; the name and a NUL follow */
export const NOTIFY_INVAL_ENTRY_OUT = {
  name: 'fuse_notify_inval_entry_out',
  size: 16,
  fields: {
    parent: f(0, 8), namelen: f(8, 4), flags: f(12, 4),
  },
} as const satisfies Layout
export const NotifyInvalEntryOut = offsets(NOTIFY_INVAL_ENTRY_OUT)
/** struct fuse_notify_inval_inode_out: drop the inode's cached pages in [off, off + len) (len 0: to the end; off -1: only its attributes) */
export const NOTIFY_INVAL_INODE_OUT = {
  name: 'fuse_notify_inval_inode_out',
  size: 24,
  fields: {
    ino: f(0, 8), off: f(8, 8), len: f(16, 8),
  },
} as const satisfies Layout
export const NotifyInvalInodeOut = offsets(NOTIFY_INVAL_INODE_OUT)
/** enum fuse_notify_code: a notification is written with unique 0 and its code in fuse_out_header.error */
export const Notify = { INVAL_INODE: 2, INVAL_ENTRY: 3 } as const

/** Every layout above, for the layout test. */
export const LAYOUTS: readonly Layout[] = [
  IN_HEADER, OUT_HEADER, INIT_IN, INIT_OUT, ATTR, ENTRY_OUT, ATTR_OUT, GETATTR_IN, SETATTR_IN, OPEN_IN, OPEN_OUT, READ_IN, WRITE_IN,
  WRITE_OUT, RELEASE_IN, FLUSH_IN, FSYNC_IN, ACCESS_IN, STATFS_OUT, DIRENT, FORGET_IN, BATCH_FORGET_IN, FORGET_ONE,
  NOTIFY_INVAL_ENTRY_OUT, NOTIFY_INVAL_INODE_OUT,
]

/** Bytes a dirent record takes: header + name, padded to 8. */
export const direntSize = (nameLen: number): number => (Dirent.SIZE + nameLen + 7) & ~7

/**
 * enum fuse_opcode. `kind` says how the session answers an opcode fcfs has no
 * handler for: 'eperm' for every change to the namespace (as fuseOps does),
 * 'noreply' for the ones the kernel never waits on, 'enosys' otherwise.
 */
export const Op = {
  LOOKUP: 1, FORGET: 2, GETATTR: 3, SETATTR: 4, READLINK: 5, SYMLINK: 6, MKNOD: 8, MKDIR: 9, UNLINK: 10, RMDIR: 11,
  RENAME: 12, LINK: 13, OPEN: 14, READ: 15, WRITE: 16, STATFS: 17, RELEASE: 18, FSYNC: 20, SETXATTR: 21, GETXATTR: 22,
  LISTXATTR: 23, REMOVEXATTR: 24, FLUSH: 25, INIT: 26, OPENDIR: 27, READDIR: 28, RELEASEDIR: 29, FSYNCDIR: 30,
  GETLK: 31, SETLK: 32, SETLKW: 33, ACCESS: 34, CREATE: 35, INTERRUPT: 36, BMAP: 37, DESTROY: 38, IOCTL: 39, POLL: 40,
  NOTIFY_REPLY: 41, BATCH_FORGET: 42, FALLOCATE: 43, READDIRPLUS: 44, RENAME2: 45, LSEEK: 46, COPY_FILE_RANGE: 47,
  SETUPMAPPING: 48, REMOVEMAPPING: 49, SYNCFS: 50, TMPFILE: 51, STATX: 52,
} as const

export type OpName = keyof typeof Op
export const OP_NAMES: Record<number, OpName> = Object.fromEntries(Object.entries(Op).map(([k, v]) => [v, k as OpName]))
/** Opcodes that would change the namespace: fcfs's tree is fixed, so EPERM. */
export const NAMESPACE_OPS: ReadonlySet<number> = new Set([Op.SYMLINK, Op.MKNOD, Op.MKDIR, Op.UNLINK, Op.RMDIR, Op.RENAME, Op.LINK, Op.CREATE, Op.RENAME2, Op.TMPFILE])
/** Opcodes the kernel sends without waiting for an answer. */
export const NO_REPLY_OPS: ReadonlySet<number> = new Set([Op.FORGET, Op.BATCH_FORGET, Op.INTERRUPT])

/** fuse_init_in/out flags (the low 32 bits) */
export const InitFlag = {
  ASYNC_READ: 1 << 0,
  BIG_WRITES: 1 << 5,
  ASYNC_DIO: 1 << 15,
  PARALLEL_DIROPS: 1 << 18,
  MAX_PAGES: 1 << 22,
  /** flags2 is valid (and the answer may carry flags2) */
  INIT_EXT: 1 << 30,
} as const

/** fuse_init_in/out flags2 (flags bits 32..63) */
export const InitFlag2 = {
  /** MAP_SHARED on FOPEN_DIRECT_IO opens (the kernel keeps the mapping coherent with direct writes; 7.39, Linux 6.6) */
  DIRECT_IO_ALLOW_MMAP: 1 << (36 - 32),
} as const

/** fuse_write_in.write_flags: the kernel writes back its page cache (a MAP_SHARED mapping's dirty pages) */
export const WRITE_CACHE = 1 << 0

/** fuse_open_out.open_flags */
export const FOpen = { DIRECT_IO: 1 << 0, KEEP_CACHE: 1 << 1, PARALLEL_DIRECT_WRITES: 1 << 6 } as const
/** fuse_setattr_in.valid */
export const FAttr = { MODE: 1 << 0, UID: 1 << 1, GID: 1 << 2, SIZE: 1 << 3, ATIME: 1 << 4, MTIME: 1 << 5, FH: 1 << 6, ATIME_NOW: 1 << 7, MTIME_NOW: 1 << 8, CTIME: 1 << 10 } as const
/** fuse_getattr_in.getattr_flags */
export const GETATTR_FH = 1 << 0
/** fuse_fsync_in.fsync_flags */
export const FSYNC_FDATASYNC = 1 << 0
