#!/usr/bin/env python3
"""fcfs API from Python (stdlib only): write inline and through a /dev/shm
region, read back, 256 reads in flight with replies matched by key, an
invalid LBA answered with BAD_LBA.

    python3 examples/python/api_example.py <mountpoint or socket> [wwpn]
"""
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', '..', 'clients', 'python'))
from fcfs_client import STATUS, ApiError, Client, ShmRegion, reply_ok  # noqa: E402


def main():
    if len(sys.argv) < 2:
        print('usage: api_example.py <mountpoint|socket> [wwpn]', file=sys.stderr)
        return 2
    wwpn = sys.argv[2] if len(sys.argv) > 2 else '21000024ff000001'
    with Client(sys.argv[1]) as c:
        print('connected to %s: protocol %d, server pid %d' % (c.path, c.hello.protocol, c.hello.server_pid))
        t = c.open(wwpn, 0)
        print('opened %s: handle 0x%08x, %d blocks of %d bytes' % (wwpn, t.handle, t.blocks, t.block_size))

        data = bytes((i * 31 + 3) & 0xFF for i in range(8192))
        c.write(t, 0, data)
        assert c.read(t, 0, len(data) // t.block_size) == data
        print('WRITE/READ 8 KiB inline: same bytes')

        with ShmRegion(1 << 20) as shm:
            rid = c.register_shm(shm)
            shm.map[0:65536] = bytes([0x5A]) * 65536
            c.write_shm(t, 1024, 65536 // t.block_size, rid, 0)
            c.read_shm(t, 0, len(data) // t.block_size, rid, 65536)
            assert shm.map[65536:65536 + len(data)] == data
            assert c.read(t, 1024, 1) == bytes([0x5A]) * t.block_size
            print('WRITE/READ through /dev/shm region %d: same bytes' % rid)
            c.unregister_shm(rid)

        keys = [c.submit(t, 'read', lba=i, blocks=1) for i in range(256)]
        order = []
        for key, r, _ in c.wait(keys):
            assert reply_ok(r), r
            order.append(key)
        assert sorted(order) == sorted(keys)
        print('256 reads in flight: all GOOD, every key answered once')

        try:
            c.read(t, t.blocks, 1)
        except ApiError as e:
            print('READ past the end: %s (%s)' % (STATUS[e.status], e))
            assert STATUS[e.status] == 'BAD_LBA'
        r, _ = c.command(t, bytes([0x28, 0, 0xFF, 0xFF, 0xFF, 0xFF, 0, 0, 1, 0]), direction='in', data_length=t.block_size)
        print('raw READ(10) past the end: scsi_status 0x%x, sense %x/%02x/%02x, errno %s'
              % (r.scsi_status, r.sense_key, r.asc, r.ascq, os.strerror(r.errno) if r.errno else 0))
    return 0


if __name__ == '__main__':
    sys.exit(main())
