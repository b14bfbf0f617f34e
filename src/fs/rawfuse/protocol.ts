/**
 * The FUSE kernel protocol: one table of byte offsets per binary layout, the
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
 * Each layout object lists its fields' offsets and its SIZE; the unit test
 * checks that fields fit and do not overlap.
 */

export const FUSE_KERNEL_VERSION = 7
/** The minor version fcfs speaks: INIT flags2, max_pages, FOPEN_PARALLEL_DIRECT_WRITES all exist by 7.38. */
export const FUSE_KERNEL_MINOR = 38
export const ROOT_ID = 1

/** struct fuse_in_header */
export const InHeader = { len: 0, opcode: 4, unique: 8, nodeid: 16, uid: 24, gid: 28, pid: 32, total_extlen: 36, padding: 38, SIZE: 40 } as const
/** struct fuse_out_header; error is a negative errno or 0 */
export const OutHeader = { len: 0, error: 4, unique: 8, SIZE: 16 } as const
/** struct fuse_init_in (the 7.36+ form with flags2) */
export const InitIn = { major: 0, minor: 4, max_readahead: 8, flags: 12, flags2: 16, SIZE: 64 } as const
/** struct fuse_init_out */
export const InitOut = {
  major: 0, minor: 4, max_readahead: 8, flags: 12, max_background: 16, congestion_threshold: 18, max_write: 20,
  time_gran: 24, max_pages: 28, map_alignment: 30, flags2: 32, max_stack_depth: 36, request_timeout: 40, SIZE: 64,
} as const
/** struct fuse_attr */
export const Attr = {
  ino: 0, size: 8, blocks: 16, atime: 24, mtime: 32, ctime: 40, atimensec: 48, mtimensec: 52, ctimensec: 56,
  mode: 60, nlink: 64, uid: 68, gid: 72, rdev: 76, blksize: 80, flags: 84, SIZE: 88,
} as const
/** struct fuse_entry_out: LOOKUP's answer (attr embedded) */
export const EntryOut = { nodeid: 0, generation: 8, entry_valid: 16, attr_valid: 24, entry_valid_nsec: 32, attr_valid_nsec: 36, attr: 40, SIZE: 40 + Attr.SIZE } as const
/** struct fuse_attr_out: GETATTR / SETATTR's answer */
export const AttrOut = { attr_valid: 0, attr_valid_nsec: 8, dummy: 12, attr: 16, SIZE: 16 + Attr.SIZE } as const
/** struct fuse_getattr_in */
export const GetattrIn = { getattr_flags: 0, dummy: 4, fh: 8, SIZE: 16 } as const
/** struct fuse_setattr_in */
export const SetattrIn = {
  valid: 0, padding: 4, fh: 8, size: 16, lock_owner: 24, atime: 32, mtime: 40, ctime: 48, atimensec: 56, mtimensec: 60,
  ctimensec: 64, mode: 68, unused4: 72, uid: 76, gid: 80, unused5: 84, SIZE: 88,
} as const
/** struct fuse_open_in (OPEN, OPENDIR) */
export const OpenIn = { flags: 0, open_flags: 4, SIZE: 8 } as const
/** struct fuse_open_out */
export const OpenOut = { fh: 0, open_flags: 8, backing_id: 12, SIZE: 16 } as const
/** struct fuse_read_in (READ, READDIR) */
export const ReadIn = { fh: 0, offset: 8, size: 16, read_flags: 20, lock_owner: 24, flags: 32, padding: 36, SIZE: 40 } as const
/** struct fuse_write_in; the data follows it */
export const WriteIn = { fh: 0, offset: 8, size: 16, write_flags: 20, lock_owner: 24, flags: 32, padding: 36, SIZE: 40 } as const
/** struct fuse_write_out */
export const WriteOut = { size: 0, padding: 4, SIZE: 8 } as const
/** struct fuse_release_in (RELEASE, RELEASEDIR) */
export const ReleaseIn = { fh: 0, flags: 8, release_flags: 12, lock_owner: 16, SIZE: 24 } as const
/** struct fuse_flush_in */
export const FlushIn = { fh: 0, unused: 8, padding: 12, lock_owner: 16, SIZE: 24 } as const
/** struct fuse_fsync_in; fsync_flags bit 0 = datasync */
export const FsyncIn = { fh: 0, fsync_flags: 8, padding: 12, SIZE: 16 } as const
/** struct fuse_access_in */
export const AccessIn = { mask: 0, padding: 4, SIZE: 8 } as const
/** struct fuse_kstatfs inside fuse_statfs_out */
export const StatfsOut = { blocks: 0, bfree: 8, bavail: 16, files: 24, ffree: 32, bsize: 40, namelen: 44, frsize: 48, padding: 52, spare: 56, SIZE: 80 } as const
/** struct fuse_dirent; name follows, the record is padded to 8 bytes */
export const Dirent = { ino: 0, off: 8, namelen: 16, type: 20, name: 24, SIZE: 24 } as const
/** struct fuse_forget_in */
export const ForgetIn = { nlookup: 0, SIZE: 8 } as const
/** struct fuse_batch_forget_in; `count` fuse_forget_one records follow */
export const BatchForgetIn = { count: 0, dummy: 4, SIZE: 8 } as const
/** struct fuse_forget_one */
export const ForgetOne = { nodeid: 0, nlookup: 8, SIZE: 16 } as const

/** struct fuse_notify_inval_entry_out; the name and a NUL follow */
export const NotifyInvalEntryOut = { parent: 0, namelen: 8, flags: 12, SIZE: 16 } as const
/** struct fuse_notify_inval_inode_out: drop the inode's cached pages in [off, off + len) (len 0: to the end; off -1: only its attributes) */
export const NotifyInvalInodeOut = { ino: 0, off: 8, len: 16, SIZE: 24 } as const
/** enum fuse_notify_code: a notification is written with unique 0 and its code in fuse_out_header.error */
export const Notify = { INVAL_INODE: 2, INVAL_ENTRY: 3 } as const

/** Every layout above, for the fit/overlap test. Offsets of 8-byte fields are the u64s. */
export const LAYOUTS = { InHeader, OutHeader, InitIn, InitOut, Attr, EntryOut, AttrOut, GetattrIn, SetattrIn, OpenIn, OpenOut, ReadIn, WriteIn, WriteOut, ReleaseIn, FlushIn, FsyncIn, AccessIn, StatfsOut, Dirent, ForgetIn, BatchForgetIn, ForgetOne, NotifyInvalEntryOut, NotifyInvalInodeOut } as const

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
