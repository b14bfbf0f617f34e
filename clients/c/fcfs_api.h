/*
 * fcfs request/reply API — the wire structures for C clients.
 *
 * A Unix-domain stream socket served by the mount (path: the `socket:` line
 * of <mnt>/api). Every message is little-endian, starts with the 16-byte
 * header below, and has a fixed size per type; IO/CDB requests with inline
 * write data and IO replies with inline read data are followed by that data,
 * counted in `length`. The structures are naturally aligned (no packing
 * needed on x86-64/aarch64); static asserts at the end check the sizes.
 * The same layouts are declared in src/api/protocol.ts (the reference) and
 * packed by clients/python/fcfs_client.py.
 *
 * Conversation: the server sends HELLO on connect. Send requests at any
 * time, as many in flight as you like; replies come in completion order and
 * carry your `key` back (match on it).
 *   OPEN → OPEN_REPLY, CLOSE → CLOSE_REPLY, REGISTER_SHM → REGISTER_REPLY,
 *   UNREGISTER_SHM → UNREGISTER_REPLY, NOP → IO_REPLY at once,
 *   IO/CDB → IO_REPLY when the command completes; with FCFS_F_ASYNC an
 *   IO_ACK comes at once first (and is the only answer when its status ≠ OK),
 *   anything the server cannot take → ERROR (the connection is closed after
 *   it when the stream cannot be framed: bad magic, version or length).
 */
#ifndef FCFS_API_H
#define FCFS_API_H

#include <stdint.h>

#define FCFS_MAGIC   0xFCA1u
#define FCFS_VERSION 1u

/* Message types (fcfs_header.type). Requests < 0x80, replies ≥ 0x80. */
enum fcfs_msg_type {
    FCFS_OPEN             = 0x01,
    FCFS_CLOSE            = 0x02,
    FCFS_REGISTER_SHM     = 0x03,
    FCFS_UNREGISTER_SHM   = 0x04,
    FCFS_IO               = 0x10,
    FCFS_CDB              = 0x11,
    FCFS_NOP              = 0x12,
    FCFS_OPEN_REPLY       = 0x81,
    FCFS_CLOSE_REPLY      = 0x82,
    FCFS_REGISTER_REPLY   = 0x83,
    FCFS_UNREGISTER_REPLY = 0x84,
    FCFS_IO_REPLY         = 0x90,
    FCFS_IO_ACK           = 0x91,
    FCFS_HELLO            = 0xA0,
    FCFS_ERROR            = 0xFF,
};

/* Reply status (the seed's io_submit): OK = carried out; for IO/CDB the HBA
 * completed the command and comp_status/scsi_status/sense say how it went.
 * Anything else: refused before it reached the HBA. */
enum fcfs_status {
    FCFS_S_OK            = 0,
    FCFS_S_BAD_MAGIC     = 1,  /* header magic ≠ 0xFCA1 (connection closed) */
    FCFS_S_BAD_VERSION   = 2,  /* header version ≠ 1 (connection closed) */
    FCFS_S_BAD_TYPE      = 3,  /* unknown message type */
    FCFS_S_BAD_LENGTH    = 4,  /* length wrong for the type / inline data ≠ blocks × block size */
    FCFS_S_BAD_HANDLE    = 5,  /* no such open target handle on this connection */
    FCFS_S_BAD_LBA       = 6,  /* lba + blocks beyond capacity (or beyond a forced CDB10) */
    FCFS_S_BAD_BLOCKS    = 7,  /* 0 blocks, or more than HELLO.max_transfer bytes */
    FCFS_S_BAD_FLAGS     = 8,  /* not exactly one of READ/WRITE, INLINE with SHM, unknown bits */
    FCFS_S_BAD_REGION    = 9,  /* no such registered region on this connection */
    FCFS_S_BAD_RANGE     = 10, /* offset + length beyond the region */
    FCFS_S_NO_TARGET     = 11, /* OPEN: no such WWPN/LUN; IO: the LUN was hot-removed */
    FCFS_S_LIMIT         = 12, /* too many handles (1024) or regions (256) on this connection */
    FCFS_S_SHM_FAILED    = 13, /* REGISTER_SHM: cannot open, not a regular file on tmpfs, too small */
    FCFS_S_BAD_CDB       = 14, /* CDB length not 6/10/12/16, or data without a direction */
    FCFS_S_SHUTTING_DOWN = 15, /* the server is unmounting */
    FCFS_S_BAD_MESSAGE   = 16, /* a must-be-zero field is not, or a bad path */
};

/* fcfs_io.flags / fcfs_cdb.flags. The first four are the seed's bits. */
#define FCFS_F_READ   (1u << 0) /* data in: target → you */
#define FCFS_F_WRITE  (1u << 1) /* data out: you → target */
#define FCFS_F_ASYNC  (1u << 2) /* IO_ACK at once, IO_REPLY when done */
#define FCFS_F_CDB10  (1u << 3) /* IO: force READ/WRITE(10) */
#define FCFS_F_INLINE (1u << 4) /* data in the messages (write: after the request; read: after the reply) */
#define FCFS_F_SHM    (1u << 5) /* data in registered region `region` at `offset` */
#define FCFS_F_FUA    (1u << 6) /* IO write: force unit access */
#define FCFS_F_CDB16  (1u << 7) /* IO: force READ/WRITE(16); neither: (10) when it fits, else (16) */

/* fcfs_io_reply.rflags */
#define FCFS_R_SENSE_VALID (1u << 0) /* sense_key/asc/ascq come from returned sense data */

/* Every message starts with this. 16 bytes. */
struct fcfs_header {
    uint16_t magic;   /* FCFS_MAGIC (bytes A1 FC) */
    uint8_t  version; /* FCFS_VERSION */
    uint8_t  type;    /* enum fcfs_msg_type */
    uint32_t length;  /* whole message in bytes: header + body + inline data */
    uint64_t key;     /* caller key: opaque to the server, echoed in the reply */
};

/* Server → client, first thing on a connection. 32 bytes. */
struct fcfs_hello {
    struct fcfs_header h;
    uint32_t protocol;      /* = FCFS_VERSION */
    uint32_t max_transfer;  /* largest data of one IO/CDB request, bytes */
    uint32_t max_in_flight; /* requests in flight before the server stops reading this connection */
    uint32_t server_pid;
};

/* Open LUN `lun` behind target port `wwpn`. 32 bytes. */
struct fcfs_open {
    struct fcfs_header h;
    uint64_t wwpn;  /* the WWPN as a number: 0x21000024ff000001 */
    uint32_t lun;
    uint16_t hba;   /* the HBA to open it through (the mount's hba/<n>): 0 = the first */
    uint16_t flags; /* 0 */
};

/* 40 bytes. */
struct fcfs_open_reply {
    struct fcfs_header h;
    uint32_t status;     /* enum fcfs_status */
    uint32_t handle;     /* the 32-bit target handle later requests carry (the seed's target_handle) */
    uint32_t block_size; /* bytes per logical block */
    uint32_t reserved;
    uint64_t blocks;     /* capacity in blocks */
};

/* CLOSE (handle) and UNREGISTER_SHM (region id in `handle`). 24 bytes. */
struct fcfs_close {
    struct fcfs_header h;
    uint32_t handle;
    uint32_t reserved;   /* 0 */
};

/* CLOSE_REPLY, REGISTER_REPLY, UNREGISTER_REPLY, IO_ACK and ERROR. 24 bytes. */
struct fcfs_status_reply {
    struct fcfs_header h;
    uint32_t status; /* enum fcfs_status */
    uint32_t detail; /* REGISTER_REPLY: the region id; ERROR: the offending message type; else the handle/region */
};

/* Register a file you created on tmpfs (e.g. /dev/shm/x, ftruncate'd and
 * mmap'ed MAP_SHARED by you). The server opens it and moves data with
 * pread/pwrite at the offsets requests name: no data crosses the socket.
 * 288 bytes. */
struct fcfs_register_shm {
    struct fcfs_header h;
    uint64_t size;        /* bytes of the region (≤ the file's size) */
    uint32_t flags;       /* 0 */
    uint32_t path_length; /* bytes of path used, no NUL */
    char     path[256];   /* absolute path, UTF-8, NUL-padded */
};

/* The seed's fcdev_io_rqst: READ or WRITE of `blocks` blocks at `lba`.
 * 48 bytes, + blocks × block_size bytes of data for an INLINE WRITE. */
struct fcfs_io {
    struct fcfs_header h; /* h.key = the seed's caller_key */
    uint32_t handle;      /* from OPEN_REPLY (the seed's target_handle) */
    uint32_t flags;       /* FCFS_F_* */
    uint64_t lba;
    uint32_t blocks;      /* logical blocks (of the LUN's block size) */
    uint32_t region;      /* SHM: region id from REGISTER_REPLY */
    uint64_t offset;      /* SHM: byte offset in the region (the seed's paddr) */
};

/* Any CDB. 64 bytes, + data_length bytes for an INLINE data-out. */
struct fcfs_cdb {
    struct fcfs_header h;
    uint32_t handle;
    uint32_t flags;       /* READ = data in, WRITE = data out, neither = no data; ASYNC; INLINE or SHM */
    uint8_t  cdb[16];
    uint8_t  cdb_length;  /* 6, 10, 12 or 16 */
    uint8_t  reserved;    /* 0 */
    uint16_t timeout;     /* firmware timeout, seconds; 0 = none */
    uint32_t data_length; /* bytes in or out */
    uint32_t region;
    uint32_t reserved2;   /* 0 */
    uint64_t offset;
};

/* The seed's fcdev_io_reply: the outcome of one IO/CDB (or NOP).
 * 40 bytes, + `transferred` bytes of data for an INLINE READ. */
struct fcfs_io_reply {
    struct fcfs_header h;  /* h.key = your caller_key */
    uint32_t status;       /* enum fcfs_status (the seed's io_submit) */
    uint16_t comp_status;  /* HBA comp_status: 0 complete, 0x15 underrun, 0x06 timeout, 0x1C queue full, 0x28/0x29 port gone */
    uint8_t  scsi_status;  /* 0 GOOD, 2 CHECK CONDITION, 8 BUSY, 0x18 RESERVATION CONFLICT, 0x28 TASK SET FULL */
    uint8_t  sense_key;    /* valid with FCFS_R_SENSE_VALID */
    uint8_t  asc;          /* additional sense code */
    uint8_t  ascq;         /* additional sense code qualifier */
    uint8_t  entry_status; /* non-zero: the firmware rejected the IOCB itself */
    uint8_t  rflags;       /* FCFS_R_* */
    uint32_t transferred;  /* bytes moved */
    uint32_t residual;     /* bytes not moved */
    uint32_t err;          /* the errno reading/writing rwbuf would give (EIO, EROFS, ENOSPC, …); 0 = success */
};

/* GOOD, possibly short (see transferred). */
static inline int fcfs_reply_ok(const struct fcfs_io_reply *r)
{
    return r->status == FCFS_S_OK && r->entry_status == 0 &&
           (r->comp_status == 0 || r->comp_status == 0x15) && r->scsi_status == 0;
}

static inline void fcfs_header_init(struct fcfs_header *h, uint8_t type, uint32_t length, uint64_t key)
{
    h->magic = FCFS_MAGIC;
    h->version = FCFS_VERSION;
    h->type = type;
    h->length = length;
    h->key = key;
}

#if defined(__STDC_VERSION__) && __STDC_VERSION__ >= 201112L
_Static_assert(sizeof(struct fcfs_header) == 16, "fcfs_header");
_Static_assert(sizeof(struct fcfs_hello) == 32, "fcfs_hello");
_Static_assert(sizeof(struct fcfs_open) == 32, "fcfs_open");
_Static_assert(sizeof(struct fcfs_open_reply) == 40, "fcfs_open_reply");
_Static_assert(sizeof(struct fcfs_close) == 24, "fcfs_close");
_Static_assert(sizeof(struct fcfs_status_reply) == 24, "fcfs_status_reply");
_Static_assert(sizeof(struct fcfs_register_shm) == 288, "fcfs_register_shm");
_Static_assert(sizeof(struct fcfs_io) == 48, "fcfs_io");
_Static_assert(sizeof(struct fcfs_cdb) == 64, "fcfs_cdb");
_Static_assert(sizeof(struct fcfs_io_reply) == 40, "fcfs_io_reply");
#endif

#endif /* FCFS_API_H */
