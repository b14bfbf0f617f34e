#!/usr/bin/env python3
"""Block I/O through libiscsi itself (libiscsi.so.7, the library libiscsi-bin's
tools are built on), for end-to-end tests: libiscsi-bin ships no dd-like tool.

  iscsi_io.py write iscsi://host:port/iqn/lun LBA BLOCKSIZE FILE   # WRITE(16) FILE's bytes at LBA
  iscsi_io.py read  iscsi://host:port/iqn/lun LBA BLOCKSIZE BYTES FILE   # READ(16) into FILE

Transfers are split into commands of at most 1 MiB. Exit status 0 on success;
on failure a message on stderr naming the SCSI status or the libiscsi error.
Only the first field of struct scsi_task (int status) is read, and READ data
lands in our own buffer (scsi_task_add_data_in_buffer), so no struct layout of
a particular libiscsi version is assumed.
"""
import ctypes
import re
import sys

CHUNK = 1 << 20
SESSION_NORMAL = 2

lib = ctypes.CDLL("libiscsi.so.7")
vp, cp, ci, cu32, cu64 = ctypes.c_void_p, ctypes.c_char_p, ctypes.c_int, ctypes.c_uint32, ctypes.c_uint64
lib.iscsi_create_context.restype = vp
lib.iscsi_create_context.argtypes = [cp]
lib.iscsi_set_targetname.argtypes = [vp, cp]
lib.iscsi_set_session_type.argtypes = [vp, ci]
lib.iscsi_full_connect_sync.argtypes = [vp, cp, ci]
lib.iscsi_get_error.restype = cp
lib.iscsi_get_error.argtypes = [vp]
lib.iscsi_logout_sync.argtypes = [vp]
lib.iscsi_destroy_context.argtypes = [vp]
lib.iscsi_write16_sync.restype = vp
lib.iscsi_write16_sync.argtypes = [vp, ci, cu64, ctypes.c_char_p, cu32, ci, ci, ci, ci, ci, ci]
lib.scsi_cdb_read16.restype = vp
lib.scsi_cdb_read16.argtypes = [cu64, cu32, ci, ci, ci, ci, ci, ci]
lib.scsi_task_add_data_in_buffer.argtypes = [vp, ci, vp]
lib.iscsi_scsi_command_sync.restype = vp
lib.iscsi_scsi_command_sync.argtypes = [vp, ci, vp, vp]
lib.scsi_free_scsi_task.argtypes = [vp]


def die(msg):
    sys.stderr.write("iscsi_io: " + msg + "\n")
    sys.exit(1)


def connect(url):
    m = re.match(r"^iscsi://([^/]+)/([^/]+)/(\d+)$", url)
    if not m:
        die("bad url %r (want iscsi://host:port/iqn/lun)" % url)
    portal, iqn, lun = m.group(1), m.group(2), int(m.group(3))
    ctx = lib.iscsi_create_context(b"iqn.2026-11.io.fcfs:test-iscsi-io")
    if not ctx:
        die("iscsi_create_context failed")
    lib.iscsi_set_targetname(ctx, iqn.encode())
    lib.iscsi_set_session_type(ctx, SESSION_NORMAL)
    if lib.iscsi_full_connect_sync(ctx, portal.encode(), lun) != 0:
        die("login to %s failed: %s" % (url, lib.iscsi_get_error(ctx).decode(errors="replace")))
    return ctx, lun


def status_of(ctx, task, what):
    if not task:
        die("%s: no task: %s" % (what, lib.iscsi_get_error(ctx).decode(errors="replace")))
    st = ctypes.cast(task, ctypes.POINTER(ctypes.c_int))[0]
    if st != 0:
        err = lib.iscsi_get_error(ctx)
        lib.scsi_free_scsi_task(task)
        die("%s: SCSI status 0x%x: %s" % (what, st, err.decode(errors="replace") if err else ""))
    lib.scsi_free_scsi_task(task)


def main():
    if len(sys.argv) < 6:
        die(__doc__)
    op, url, lba, bs = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    ctx, lun = connect(url)
    try:
        if op == "write":
            data = open(sys.argv[5], "rb").read()
            if len(data) % bs:
                die("%d bytes is not a multiple of the block size %d" % (len(data), bs))
            for off in range(0, len(data), CHUNK):
                piece = data[off:off + CHUNK]
                task = lib.iscsi_write16_sync(ctx, lun, lba + off // bs, piece, len(piece), bs, 0, 0, 0, 0, 0)
                status_of(ctx, task, "WRITE(16) at LBA %d" % (lba + off // bs))
        elif op == "read":
            total, out = int(sys.argv[5]), sys.argv[6]
            result = bytearray()
            for off in range(0, total, CHUNK):
                n = min(CHUNK, total - off)
                buf = ctypes.create_string_buffer(n)
                task = lib.scsi_cdb_read16(lba + off // bs, n, bs, 0, 0, 0, 0, 0)
                lib.scsi_task_add_data_in_buffer(task, n, ctypes.cast(buf, vp))
                task2 = lib.iscsi_scsi_command_sync(ctx, lun, task, None)
                status_of(ctx, task2, "READ(16) at LBA %d" % (lba + off // bs))
                result += buf.raw[:n]
            open(out, "wb").write(bytes(result))
        else:
            die("unknown operation %r" % op)
    finally:
        lib.iscsi_logout_sync(ctx)
        lib.iscsi_destroy_context(ctx)


main()
