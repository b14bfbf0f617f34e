/*
 * fcfs API from C: open a LUN, write through a /dev/shm region the client
 * maps (no data through the socket), read it back inline, then 64 reads in
 * flight at once with replies matched by caller key.
 *
 *   cc -O2 -Wall -I clients/c -o api_example examples/c/api_example.c
 *   ./api_example <mountpoint or socket> [wwpn]
 */
#define _POSIX_C_SOURCE 200809L
#define _DEFAULT_SOURCE
#include "fcfs_api.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

static int fd = -1;

static void die(const char *what) { fprintf(stderr, "api_example: %s: %s\n", what, errno ? strerror(errno) : "failed"); exit(1); }

static void send_all(const void *p, size_t n)
{
    const char *c = p;
    while (n > 0) {
        ssize_t k = write(fd, c, n);
        if (k < 0 && errno == EINTR) continue;
        if (k <= 0) die("write");
        c += k; n -= (size_t)k;
    }
}

static void recv_all(void *p, size_t n)
{
    char *c = p;
    while (n > 0) {
        ssize_t k = read(fd, c, n);
        if (k < 0 && errno == EINTR) continue;
        if (k <= 0) { errno = 0; die("read (connection closed)"); }
        c += k; n -= (size_t)k;
    }
}

/* Reads one whole message into buf (cap bytes); returns its header. */
static struct fcfs_header recv_msg(void *buf, size_t cap)
{
    struct fcfs_header h;
    recv_all(&h, sizeof h);
    if (h.magic != FCFS_MAGIC || h.length < sizeof h || h.length > cap) { errno = 0; die("bad reply header"); }
    memcpy(buf, &h, sizeof h);
    recv_all((char *)buf + sizeof h, h.length - sizeof h);
    return h;
}

static void socket_path(const char *arg, char *out, size_t cap)
{
    struct stat st;
    if (stat(arg, &st) == 0 && S_ISSOCK(st.st_mode)) { snprintf(out, cap, "%s", arg); return; }
    char api[4096];
    snprintf(api, sizeof api, "%s/api", arg);
    FILE *f = fopen(api, "r");
    if (!f) die(api);
    char line[512];
    while (fgets(line, sizeof line, f)) {
        if (strncmp(line, "socket: ", 8) == 0) {
            line[strcspn(line, "\n")] = 0;
            if (strlen(line + 8) >= cap) { errno = ENAMETOOLONG; die("socket path"); }
            memcpy(out, line + 8, strlen(line + 8) + 1);
            fclose(f);
            return;
        }
    }
    errno = 0;
    die("no socket: line in <mnt>/api");
}

int main(int argc, char **argv)
{
    if (argc < 2) { fprintf(stderr, "usage: %s <mountpoint|socket> [wwpn]\n", argv[0]); return 2; }
    const char *wwpn = argc > 2 ? argv[2] : "21000024ff000001";
    static char buf[1 << 21];

    struct sockaddr_un sa = { .sun_family = AF_UNIX };
    socket_path(argv[1], sa.sun_path, sizeof sa.sun_path);
    fd = socket(AF_UNIX, SOCK_STREAM, 0);
    if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof sa) < 0) die(sa.sun_path);

    struct fcfs_hello hello;
    recv_msg(&hello, sizeof hello);
    printf("connected to %s: protocol %u, max transfer %u, server pid %u\n", sa.sun_path, hello.protocol, hello.max_transfer, hello.server_pid);

    /* OPEN */
    struct fcfs_open op = { .wwpn = strtoull(wwpn, NULL, 16), .lun = 0 };
    fcfs_header_init(&op.h, FCFS_OPEN, sizeof op, 1);
    send_all(&op, sizeof op);
    struct fcfs_open_reply orep;
    recv_msg(&orep, sizeof orep);
    if (orep.status != FCFS_S_OK) { fprintf(stderr, "OPEN %s: status %u\n", wwpn, orep.status); return 1; }
    printf("opened %s: handle 0x%08x, %llu blocks of %u bytes\n", wwpn, orep.handle, (unsigned long long)orep.blocks, orep.block_size);

    /* A region in /dev/shm, mapped here, registered there. */
    const size_t rsize = 1 << 20;
    char path[64];
    snprintf(path, sizeof path, "/dev/shm/fcfs-c-%d", (int)getpid());
    int sfd = open(path, O_RDWR | O_CREAT | O_EXCL, 0600);
    if (sfd < 0 || ftruncate(sfd, rsize) < 0) die(path);
    unsigned char *mem = mmap(NULL, rsize, PROT_READ | PROT_WRITE, MAP_SHARED, sfd, 0);
    if (mem == MAP_FAILED) die("mmap");
    struct fcfs_register_shm reg = { .size = rsize, .path_length = (uint32_t)strlen(path) };
    memcpy(reg.path, path, strlen(path));
    fcfs_header_init(&reg.h, FCFS_REGISTER_SHM, sizeof reg, 2);
    send_all(&reg, sizeof reg);
    struct fcfs_status_reply sr;
    recv_msg(&sr, sizeof sr);
    if (sr.h.type != FCFS_REGISTER_REPLY || sr.status != FCFS_S_OK) { fprintf(stderr, "REGISTER_SHM: status %u\n", sr.status); return 1; }
    uint32_t region = sr.detail;

    /* WRITE 64 KiB at LBA 0 from the region: the server pread()s it, nothing on the socket. */
    const uint32_t bytes = 65536, blocks = bytes / orep.block_size;
    for (uint32_t i = 0; i < bytes; i++) mem[i] = (unsigned char)(i * 13 + 7);
    struct fcfs_io io = { .handle = orep.handle, .flags = FCFS_F_WRITE | FCFS_F_SHM, .lba = 0, .blocks = blocks, .region = region, .offset = 0 };
    fcfs_header_init(&io.h, FCFS_IO, sizeof io, 3);
    send_all(&io, sizeof io);
    struct fcfs_io_reply *rep = (struct fcfs_io_reply *)buf;
    recv_msg(buf, sizeof buf);
    if (!fcfs_reply_ok(rep)) { fprintf(stderr, "WRITE: status %u scsi 0x%x\n", rep->status, rep->scsi_status); return 1; }
    printf("WRITE %u blocks from /dev/shm: %u bytes moved\n", blocks, rep->transferred);

    /* READ it back inline: the data follows the reply. */
    io.flags = FCFS_F_READ | FCFS_F_INLINE;
    io.h.key = 4;
    send_all(&io, sizeof io);
    recv_msg(buf, sizeof buf);
    if (!fcfs_reply_ok(rep) || rep->h.length != sizeof *rep + bytes || memcmp(buf + sizeof *rep, mem, bytes) != 0) {
        fprintf(stderr, "READ back: mismatch (status %u, %u bytes)\n", rep->status, rep->transferred);
        return 1;
    }
    printf("READ %u blocks inline: same bytes\n", blocks);

    /* 64 reads of 1 block in flight, sent in one write; replies come in completion order. */
    static struct fcfs_io many[64];
    for (int i = 0; i < 64; i++) {
        many[i] = (struct fcfs_io){ .handle = orep.handle, .flags = FCFS_F_READ | FCFS_F_SHM, .lba = (uint64_t)i, .blocks = 1, .region = region, .offset = 65536 + (uint64_t)i * orep.block_size };
        fcfs_header_init(&many[i].h, FCFS_IO, sizeof many[i], 1000 + (uint64_t)i);
    }
    send_all(many, sizeof many);
    int seen[64] = { 0 }, good = 0;
    for (int i = 0; i < 64; i++) {
        recv_msg(buf, sizeof buf);
        uint64_t k = rep->h.key - 1000;
        if (k < 64 && !seen[k]++ && fcfs_reply_ok(rep)) good++;
    }
    int same = memcmp(mem + 65536, mem, 64 * orep.block_size) == 0;
    printf("64 reads in flight: %d GOOD, region holds the same bytes: %s\n", good, same ? "yes" : "no");

    /* An invalid LBA gets a clear status, the connection goes on. */
    io.lba = orep.blocks; io.blocks = 1; io.h.key = 5;
    send_all(&io, sizeof io);
    recv_msg(buf, sizeof buf);
    printf("READ past the end: status %u (%s)\n", rep->status, rep->status == FCFS_S_BAD_LBA ? "BAD_LBA" : "?");

    munmap(mem, rsize);
    close(sfd);
    unlink(path);
    close(fd);
    return good == 64 && same && rep->status == FCFS_S_BAD_LBA ? 0 : 1;
}
