"""fcfs request/reply API client: Python 3 standard library only.

The protocol is documented in src/api/protocol.ts and the README ("The
request/reply API"); clients/c/fcfs_api.h declares the same structures.

    from fcfs_client import Client, ShmRegion
    with Client('/mnt/fc') as c:                      # a mountpoint (reads <mnt>/api) or a socket path
        t = c.open('21000024ff000001', 0)             # Target(handle, block_size, blocks)
        c.write(t, 0, b'\\xab' * 4096)                 # raises ApiError unless GOOD
        data = c.read(t, 0, 8)
        # many in flight: submit() returns the key at once, wait() collects replies in any order
        keys = [c.submit(t, 'read', lba=i, blocks=1) for i in range(100)]
        for key, reply, data in c.wait(keys):
            ...
        # zero-copy for the client: data in a /dev/shm region the client maps
        with ShmRegion(1 << 20) as shm:
            rid = c.register_shm(shm)
            shm.map[0:4096] = b'\\x11' * 4096
            c.write_shm(t, 0, 8, rid, 0)
"""
import mmap
import os
import socket
import struct
import uuid
from collections import namedtuple

MAGIC = 0xFCA1
VERSION = 1

# Message types
OPEN, CLOSE, REGISTER_SHM, UNREGISTER_SHM = 0x01, 0x02, 0x03, 0x04
IO, CDB, NOP = 0x10, 0x11, 0x12
OPEN_REPLY, CLOSE_REPLY, REGISTER_REPLY, UNREGISTER_REPLY = 0x81, 0x82, 0x83, 0x84
IO_REPLY, IO_ACK, HELLO, ERROR = 0x90, 0x91, 0xA0, 0xFF

# IO / CDB flags (READ/WRITE/ASYNC/CDB10 are the seed's bits)
F_READ, F_WRITE, F_ASYNC, F_CDB10, F_INLINE, F_SHM, F_FUA, F_CDB16 = 1, 2, 4, 8, 16, 32, 64, 128

STATUS = {
    0: 'OK', 1: 'BAD_MAGIC', 2: 'BAD_VERSION', 3: 'BAD_TYPE', 4: 'BAD_LENGTH', 5: 'BAD_HANDLE',
    6: 'BAD_LBA', 7: 'BAD_BLOCKS', 8: 'BAD_FLAGS', 9: 'BAD_REGION', 10: 'BAD_RANGE',
    11: 'NO_TARGET', 12: 'LIMIT', 13: 'SHM_FAILED', 14: 'BAD_CDB', 15: 'SHUTTING_DOWN', 16: 'BAD_MESSAGE',
}

# Layouts (little-endian; see the tables in src/api/protocol.ts)
HEADER = struct.Struct('<HBBIQ')              # magic, version, type, length, key            16
HELLO_S = struct.Struct('<HBBIQIIII')         # + protocol, maxTransfer, maxInFlight, pid    32
OPEN_S = struct.Struct('<HBBIQQIHH')          # + wwpn u64, lun, hba u16, flags u16         32
OPEN_REPLY_S = struct.Struct('<HBBIQIIIIQ')   # + status, handle, blockSize, reserved, blocks 40
CLOSE_S = struct.Struct('<HBBIQII')           # + handle (or region), reserved              24
STATUS_S = struct.Struct('<HBBIQII')          # + status, detail                           24
REGISTER_S = struct.Struct('<HBBIQQII256s')   # + size u64, flags, pathLength, path[256]   288
IO_S = struct.Struct('<HBBIQIIQIIQ')          # + handle, flags, lba, blocks, region, offset 48
CDB_S = struct.Struct('<HBBIQII16sBBHIIIQ')   # + handle, flags, cdb[16], cdbLen, res, timeout, dataLength, region, res, offset 64
IO_REPLY_S = struct.Struct('<HBBIQIHBBBBBBIII')  # + status, comp, scsi, skey, asc, ascq, entry, rflags, transferred, residual, errno 40

assert [s.size for s in (HEADER, HELLO_S, OPEN_S, OPEN_REPLY_S, CLOSE_S, STATUS_S, REGISTER_S, IO_S, CDB_S, IO_REPLY_S)] == \
    [16, 32, 32, 40, 24, 24, 288, 48, 64, 40]

Target = namedtuple('Target', 'wwpn lun handle block_size blocks')
Reply = namedtuple('Reply', 'key status comp_status scsi_status sense_key asc ascq entry_status sense_valid transferred residual errno')
Hello = namedtuple('Hello', 'protocol max_transfer max_in_flight server_pid')


def reply_ok(r):
    """The command completed GOOD (possibly short: see transferred)."""
    return (r.status == 0 and r.entry_status == 0 and r.comp_status in (0, 0x15) and r.scsi_status == 0)


class ApiError(Exception):
    def __init__(self, what, status, reply=None, note=None):
        self.status = status
        self.status_name = STATUS.get(status, 'status %d' % status)
        self.reply = reply
        if reply is not None and status == 0:
            detail = 'comp_status 0x%x, scsi_status 0x%x' % (reply.comp_status, reply.scsi_status)
            if reply.sense_valid:
                detail += ', sense %x/%02x/%02x' % (reply.sense_key, reply.asc, reply.ascq)
            if reply.errno:
                detail += ', ' + os.strerror(reply.errno)
        else:
            detail = self.status_name
        if note:
            detail += ' (%s)' % note
        super().__init__('%s failed: %s' % (what, detail))


def socket_path(p):
    """The API socket of a mount (read from <mnt>/api), or p itself when it is a socket."""
    import stat
    st = os.stat(p)
    if stat.S_ISSOCK(st.st_mode):
        return p
    with open(os.path.join(p, 'api')) as f:
        for line in f:
            if line.startswith('socket: '):
                v = line[len('socket: '):].strip()
                if v != 'off':
                    return v
    raise ApiError('finding the API socket of %s' % p, 15)


class ShmRegion:
    """A file in /dev/shm, mapped: `map` is the memory the server reads and writes."""

    def __init__(self, size, directory='/dev/shm'):
        self.size = size
        self.path = os.path.join(directory, 'fcfs-py-%d-%s' % (os.getpid(), uuid.uuid4().hex[:8]))
        self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
        os.ftruncate(self.fd, size)
        self.map = mmap.mmap(self.fd, size)

    def close(self):
        if self.map is not None:
            self.map.close()
            os.close(self.fd)
            self.map = None
            try:
                os.unlink(self.path)
            except FileNotFoundError:
                pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class Client:
    def __init__(self, path):
        self.path = socket_path(path)
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.connect(self.path)
        self._buf = bytearray()
        self._pos = 0
        self._out = []
        self._next = 1
        self._done = {}      # key -> (type, message bytes) answered but not collected yet
        self._async = set()  # keys of ASYNC requests: their accepted IO_ACK is not the answer
        t, m = self._read_message()
        if t != HELLO:
            raise ApiError('HELLO', 3)
        _, _, _, _, _, proto, max_transfer, max_in_flight, pid = HELLO_S.unpack_from(m)
        if proto != VERSION:
            raise ApiError('HELLO (server speaks protocol %d)' % proto, 2)
        self.hello = Hello(proto, max_transfer, max_in_flight, pid)

    # -- plumbing --

    def _key(self):
        k = self._next
        self._next = 1 if k >= 0xFFFFFFFF else k + 1
        return k

    def _queue(self, *parts):
        self._out.extend(parts)

    def flush(self):
        """Sends every queued request in one write.

        A server that cannot frame a message (e.g. one longer than 64 +
        hello.max_transfer) answers ERROR and closes the connection, so the
        send can fail with EPIPE or ECONNRESET before the ERROR is read: then
        the replies that arrived are read and the ERROR is raised as an
        ApiError with its status (status_name 'BAD_LENGTH', …)."""
        if self._out:
            data = b''.join(self._out)
            self._out = []
            try:
                self.sock.sendall(data)
            except (BrokenPipeError, ConnectionResetError) as e:
                raise self._closed_by_server(e) from e

    def _closed_by_server(self, err):
        """What the server sent before it closed (replies filed under their keys): the ApiError of its last ERROR, or `err`."""
        error = None
        while True:
            try:
                t, m = self._read_message()
            except (ApiError, OSError):
                break
            if t == ERROR:
                error = m
            self._file(t, m)
        if error is None:
            return err
        status, detail = STATUS_S.unpack_from(error)[5:7]
        return ApiError('sending requests', status,
                        note='the server answered ERROR to a message of type 0x%02x and closed the connection' % detail)

    def _read_message(self):
        buf = self._buf
        while True:
            pos = self._pos
            if len(buf) - pos >= 16:
                magic, _, t, n, _ = HEADER.unpack_from(buf, pos)
                if magic != MAGIC or n < 16:
                    raise ApiError('reading a reply (bad header)', 1)
                if len(buf) - pos >= n:
                    m = bytes(buf[pos:pos + n])
                    self._pos = pos + n
                    return t, m
            if pos:
                del buf[:pos]  # compact once per socket read, not once per message
                self._pos = 0
            chunk = self.sock.recv(1 << 20)
            if not chunk:
                raise ApiError('reading a reply (connection closed)', 15)
            buf += chunk

    def _pump(self):
        """Reads one message and files it under its key."""
        self._file(*self._read_message())

    def _file(self, t, m):
        key = HEADER.unpack_from(m)[4]
        if t == IO_ACK and key in self._async:
            self._async.discard(key)
            if STATUS_S.unpack_from(m)[5] == 0:
                return  # accepted: the IO_REPLY follows
        self._done[key] = (t, m)

    def _answer(self, key):
        self.flush()
        while key not in self._done:
            self._pump()
        return self._done.pop(key)

    def _status_call(self, t, value, what):
        key = self._key()
        self._queue(CLOSE_S.pack(MAGIC, VERSION, t, CLOSE_S.size, key, value, 0))
        rt, m = self._answer(key)
        status, detail = STATUS_S.unpack_from(m)[5:7]
        if rt == ERROR or status != 0:
            raise ApiError(what, status)
        return detail

    # -- targets and regions --

    def open(self, wwpn, lun=0, hba=0):
        """hba: the HBA (the mount's hba/<n>) whose view the LUN is in and whose commands carry its I/O."""
        key = self._key()
        w = int(wwpn.replace(':', ''), 16)
        self._queue(OPEN_S.pack(MAGIC, VERSION, OPEN, OPEN_S.size, key, w, lun, hba, 0))
        t, m = self._answer(key)
        if t != OPEN_REPLY:
            raise ApiError('OPEN', STATUS_S.unpack_from(m)[5])
        f = OPEN_REPLY_S.unpack_from(m)
        if f[5] != 0:
            raise ApiError('OPEN %s/%d%s' % (wwpn, lun, ' on HBA %d' % hba if hba else ''), f[5])
        return Target(wwpn.replace(':', '').lower(), lun, f[6], f[7], f[9])

    def close_target(self, target):
        self._status_call(CLOSE, target.handle, 'CLOSE')

    def register_shm(self, region, size=None):
        """Registers a ShmRegion (or a path on tmpfs) and returns the region id."""
        path = region.path if isinstance(region, ShmRegion) else region
        size = size if size is not None else region.size
        p = path.encode()
        key = self._key()
        self._queue(REGISTER_S.pack(MAGIC, VERSION, REGISTER_SHM, REGISTER_S.size, key, size, 0, len(p), p))
        t, m = self._answer(key)
        status, rid = STATUS_S.unpack_from(m)[5:7]
        if t != REGISTER_REPLY or status != 0:
            raise ApiError('REGISTER_SHM %s' % path, status)
        return rid

    def unregister_shm(self, rid):
        self._status_call(UNREGISTER_SHM, rid, 'UNREGISTER_SHM')

    # -- I/O --

    def submit(self, target, op, lba, blocks, data=None, region=None, offset=0, async_=False, fua=False, cdb10=False, cdb16=False):
        """Queues one READ ('read') or WRITE ('write'); returns its key. Sent by flush()/wait()/any sync call."""
        flags = F_READ if op == 'read' else F_WRITE
        flags |= F_SHM if region is not None else F_INLINE
        if async_:
            flags |= F_ASYNC
        if fua:
            flags |= F_FUA
        if cdb10:
            flags |= F_CDB10
        if cdb16:
            flags |= F_CDB16
        inline = bytes(data) if (data is not None and region is None and op == 'write') else b''
        key = self._key()
        handle = target.handle if isinstance(target, Target) else target
        self._queue(IO_S.pack(MAGIC, VERSION, IO, IO_S.size + len(inline), key, handle, flags, lba, blocks,
                              region or 0, offset), inline)
        if async_:
            self._async.add(key)
        return key

    def submit_cdb(self, target, cdb, direction=None, data=None, data_length=0, region=None, offset=0, timeout=0, async_=False):
        """Queues any CDB; direction 'in', 'out' or None. Returns its key."""
        flags = F_READ if direction == 'in' else F_WRITE if direction == 'out' else 0
        if direction == 'out' and data is not None and region is None:
            data_length = len(data)
        if data_length:
            flags |= F_SHM if region is not None else F_INLINE
        if async_:
            flags |= F_ASYNC
        inline = bytes(data) if (direction == 'out' and region is None and data is not None) else b''
        key = self._key()
        handle = target.handle if isinstance(target, Target) else target
        self._queue(CDB_S.pack(MAGIC, VERSION, CDB, CDB_S.size + len(inline), key, handle, flags, bytes(cdb), len(cdb), 0,
                               timeout, data_length, region or 0, 0, offset), inline)
        if async_:
            self._async.add(key)
        return key

    def nop(self):
        """The seed's faked completion: answered at once by the server without the HBA. Returns its key."""
        key = self._key()
        self._queue(HEADER.pack(MAGIC, VERSION, NOP, 16, key))
        return key

    @staticmethod
    def _reply(t, m):
        if t == IO_REPLY:
            f = IO_REPLY_S.unpack_from(m)
            r = Reply(f[4], f[5], f[6], f[7], f[8], f[9], f[10], f[11], bool(f[12] & 1), f[13], f[14], f[15])
            return r, m[IO_REPLY_S.size:] or None
        status = STATUS_S.unpack_from(m)[5]
        return Reply(HEADER.unpack_from(m)[4], status, 0, 0, 0, 0, 0, 0, False, 0, 0, 0), None

    def result(self, key):
        """Waits for request `key`: (Reply, data or None)."""
        return self._reply(*self._answer(key))

    def wait(self, keys):
        """Yields (key, Reply, data) for every key in `keys`, in the order they complete (not the order sent)."""
        self.flush()
        want = set(keys)
        while want:
            ready = [k for k in self._done if k in want]
            if not ready:
                self._pump()
                continue
            for k in ready:
                r, data = self._reply(*self._done.pop(k))
                want.discard(k)
                yield k, r, data

    def read(self, target, lba, blocks, **kw):
        r, data = self.result(self.submit(target, 'read', lba, blocks, **kw))
        if not reply_ok(r):
            raise ApiError('READ lba %d blocks %d' % (lba, blocks), r.status, r)
        return data or b''

    def write(self, target, lba, data, **kw):
        if len(data) == 0 or len(data) % target.block_size:
            raise ValueError('%d bytes is not a whole number of %d-byte blocks' % (len(data), target.block_size))
        r, _ = self.result(self.submit(target, 'write', lba, len(data) // target.block_size, data=data, **kw))
        if not reply_ok(r):
            raise ApiError('WRITE lba %d' % lba, r.status, r)
        return r

    def read_shm(self, target, lba, blocks, rid, offset):
        r, _ = self.result(self.submit(target, 'read', lba, blocks, region=rid, offset=offset))
        if not reply_ok(r):
            raise ApiError('READ lba %d blocks %d' % (lba, blocks), r.status, r)
        return r

    def write_shm(self, target, lba, blocks, rid, offset, fua=False):
        r, _ = self.result(self.submit(target, 'write', lba, blocks, region=rid, offset=offset, fua=fua))
        if not reply_ok(r):
            raise ApiError('WRITE lba %d blocks %d' % (lba, blocks), r.status, r)
        return r

    def command(self, target, cdb, **kw):
        """Any CDB; returns (Reply, data or None) however it went."""
        return self.result(self.submit_cdb(target, cdb, **kw))

    def close(self):
        try:
            self.flush()
        finally:
            self.sock.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
