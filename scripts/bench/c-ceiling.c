/*
 * The bench's C ceiling: a RAM disk on the libfuse 3 low-level API, the most a
 * user-space FUSE server in C reaches on this kernel. It exposes the tree of
 * ceiling-server.ts: <mnt>/f<i> (i = 0..files-1), each `bytes` long, and
 * <mnt>/f<i>.q<k> (k = 0..15), more names for the same memory, each its own
 * inode so that O_DIRECT writers on different names run in parallel.
 *
 *   c-ceiling <mnt> <files> <bytes-per-file> [threads] [parallel-writes 0|1]
 *
 * - Multithreaded (fuse_session_loop_mt) with clone_fd: every worker thread
 *   reads and answers on a /dev/fuse descriptor of its own.
 * - 1 MiB requests: max_write 1 MiB (libfuse then asks the kernel for
 *   max_pages 256) and the max_read=1048576 mount option.
 * - Every open is direct_io (no page cache), as fcfs and the node ceiling
 *   mount with direct_io.
 * - READ answers straight from the RAM (fuse_reply_buf: the kernel's copy into
 *   the reader is the only one); WRITE copies libfuse's request buffer into
 *   the RAM with memcpy.
 * - Parallel direct writes to one file (FOPEN_PARALLEL_DIRECT_WRITES): libfuse
 *   3.14's fuse_file_info has no bit for it (3.15 added one), so the open
 *   reply is built here as the kernel's struct fuse_open_out and sent with
 *   fuse_reply_buf, which is all fuse_reply_open does. Argument 5 = 0 answers
 *   with plain fuse_reply_open instead (one write per file at a time).
 *
 * Prints `c-ceiling mounted at <mnt>` when it serves; SIGTERM/SIGINT unmount.
 * At exit it prints what it saw on stderr: the largest READ and WRITE and the
 * most WRITEs it ran at once on one inode (checks that 1 MiB requests and
 * parallel writes took effect).
 *
 * Build: gcc -O2 -Wall -o c-ceiling c-ceiling.c $(pkg-config --cflags --libs fuse3)
 */
#define FUSE_USE_VERSION 312
#define _GNU_SOURCE
#include <fuse_lowlevel.h>
#include <linux/fuse.h> /* struct fuse_open_out, FOPEN_* (the kernel ABI) */
#include <errno.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#define QUEUE_FILES 16  /* aliases per file, as plan.ts QUEUE_FILES */
#define MAX_REQUEST (1024 * 1024)
#define NAMES_PER_FILE (1 + QUEUE_FILES)
/* Nothing in the tree ever changes: the kernel may keep names and sizes. */
#define TIMEOUT 86400.0

struct ram_file {
	char *data;
	atomic_int writers; /* WRITEs running now on any of its names */
};

static struct {
	unsigned files;
	size_t size;
	int parallel;
	uid_t uid;
	gid_t gid;
	struct ram_file *file;
	atomic_size_t max_read, max_write;
	atomic_int peak_writers;
} ram;

/*
 * Inodes: 1 is the root; file i's names are 2 + i*NAMES_PER_FILE + j, where
 * j = 0 is f<i> and j = 1 + k is f<i>.q<k>.
 */
static int file_of(fuse_ino_t ino)
{
	if (ino < 2 || ino >= 2 + (fuse_ino_t)ram.files * NAMES_PER_FILE)
		return -1;
	return (int)((ino - 2) / NAMES_PER_FILE);
}

static void name_of(fuse_ino_t ino, char *buf, size_t len)
{
	unsigned i = (ino - 2) / NAMES_PER_FILE, j = (ino - 2) % NAMES_PER_FILE;
	if (j == 0)
		snprintf(buf, len, "f%u", i);
	else
		snprintf(buf, len, "f%u.q%u", i, j - 1);
}

/* f<i> or f<i>.q<k> with no leading zeros and nothing after; 0 when not ours. */
static fuse_ino_t ino_of(const char *name)
{
	unsigned i, k;
	int n = 0;
	char check[48];
	if (sscanf(name, "f%u%n", &i, &n) == 1 && name[n] == '\0' && i < ram.files) {
		snprintf(check, sizeof check, "f%u", i);
		return strcmp(check, name) == 0 ? 2 + (fuse_ino_t)i * NAMES_PER_FILE : 0;
	}
	if (sscanf(name, "f%u.q%u%n", &i, &k, &n) == 2 && name[n] == '\0' && i < ram.files && k < QUEUE_FILES) {
		snprintf(check, sizeof check, "f%u.q%u", i, k);
		return strcmp(check, name) == 0 ? 2 + (fuse_ino_t)i * NAMES_PER_FILE + 1 + k : 0;
	}
	return 0;
}

static void fill_stat(fuse_ino_t ino, struct stat *st)
{
	memset(st, 0, sizeof *st);
	st->st_ino = ino;
	st->st_uid = ram.uid;
	st->st_gid = ram.gid;
	st->st_blksize = 4096;
	if (ino == FUSE_ROOT_ID) {
		st->st_mode = S_IFDIR | 0755;
		st->st_nlink = 2;
		st->st_size = 4096;
	} else {
		st->st_mode = S_IFREG | 0660;
		st->st_nlink = 1;
		st->st_size = (off_t)ram.size;
		st->st_blocks = (blkcnt_t)((ram.size + 511) / 512);
	}
}

static void raise_to(atomic_size_t *max, size_t v)
{
	size_t cur = atomic_load_explicit(max, memory_order_relaxed);
	while (v > cur && !atomic_compare_exchange_weak_explicit(max, &cur, v, memory_order_relaxed, memory_order_relaxed))
		;
}

static void cc_init(void *userdata, struct fuse_conn_info *conn)
{
	(void)userdata;
	conn->max_write = MAX_REQUEST;
	conn->max_read = MAX_REQUEST; /* must equal the max_read mount option */
	/* Copies from the request buffer are the point: no splice. */
	conn->want &= ~(FUSE_CAP_SPLICE_READ | FUSE_CAP_SPLICE_WRITE | FUSE_CAP_SPLICE_MOVE);
}

static void cc_lookup(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	fuse_ino_t ino = parent == FUSE_ROOT_ID ? ino_of(name) : 0;
	if (!ino) {
		fuse_reply_err(req, ENOENT);
		return;
	}
	struct fuse_entry_param e;
	memset(&e, 0, sizeof e);
	e.ino = ino;
	e.attr_timeout = TIMEOUT;
	e.entry_timeout = TIMEOUT;
	fill_stat(ino, &e.attr);
	fuse_reply_entry(req, &e);
}

static void cc_getattr(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	(void)fi;
	if (ino != FUSE_ROOT_ID && file_of(ino) < 0) {
		fuse_reply_err(req, ENOENT);
		return;
	}
	struct stat st;
	fill_stat(ino, &st);
	fuse_reply_attr(req, &st, TIMEOUT);
}

/* Sizes are fixed, like a block device's: truncate (O_TRUNC) is accepted and ignored. */
static void cc_setattr(fuse_req_t req, fuse_ino_t ino, struct stat *attr, int to_set, struct fuse_file_info *fi)
{
	(void)attr;
	(void)to_set;
	cc_getattr(req, ino, fi);
}

static void cc_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, struct fuse_file_info *fi)
{
	(void)fi;
	if (ino != FUSE_ROOT_ID) {
		fuse_reply_err(req, ENOTDIR);
		return;
	}
	/* Entry n: 0 ".", 1 "..", then the inodes 2.. in order; its d_off is n + 1. */
	size_t total = 2 + (size_t)ram.files * NAMES_PER_FILE;
	char *buf = malloc(size);
	if (!buf) {
		fuse_reply_err(req, ENOMEM);
		return;
	}
	size_t used = 0;
	for (size_t n = (size_t)off; n < total; n++) {
		char name[48];
		struct stat st;
		memset(&st, 0, sizeof st);
		if (n < 2) {
			snprintf(name, sizeof name, n == 0 ? "." : "..");
			st.st_ino = FUSE_ROOT_ID;
			st.st_mode = S_IFDIR;
		} else {
			name_of(n, name, sizeof name);
			st.st_ino = n;
			st.st_mode = S_IFREG;
		}
		size_t need = fuse_add_direntry(req, buf + used, size - used, name, &st, (off_t)n + 1);
		if (need > size - used)
			break;
		used += need;
	}
	fuse_reply_buf(req, buf, used);
	free(buf);
}

static void cc_open(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	if (ino == FUSE_ROOT_ID) {
		fuse_reply_err(req, EISDIR);
		return;
	}
	int f = file_of(ino);
	if (f < 0) {
		fuse_reply_err(req, ENOENT);
		return;
	}
	fi->fh = (uint64_t)f;
	fi->direct_io = 1;
	if (!ram.parallel) {
		fuse_reply_open(req, fi);
		return;
	}
	struct fuse_open_out out;
	memset(&out, 0, sizeof out);
	out.fh = fi->fh;
	out.open_flags = FOPEN_DIRECT_IO | FOPEN_PARALLEL_DIRECT_WRITES;
	fuse_reply_buf(req, (const char *)&out, sizeof out);
}

static void cc_read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, struct fuse_file_info *fi)
{
	(void)ino;
	raise_to(&ram.max_read, size);
	size_t n = (size_t)off >= ram.size ? 0 : size < ram.size - (size_t)off ? size : ram.size - (size_t)off;
	fuse_reply_buf(req, n ? ram.file[fi->fh].data + off : NULL, n);
}

static void cc_write(fuse_req_t req, fuse_ino_t ino, const char *buf, size_t size, off_t off, struct fuse_file_info *fi)
{
	(void)ino;
	raise_to(&ram.max_write, size);
	if ((size_t)off >= ram.size) {
		fuse_reply_err(req, ENOSPC);
		return;
	}
	struct ram_file *f = &ram.file[fi->fh];
	int now = atomic_fetch_add_explicit(&f->writers, 1, memory_order_relaxed) + 1;
	int peak = atomic_load_explicit(&ram.peak_writers, memory_order_relaxed);
	while (now > peak && !atomic_compare_exchange_weak_explicit(&ram.peak_writers, &peak, now, memory_order_relaxed, memory_order_relaxed))
		;
	size_t n = size < ram.size - (size_t)off ? size : ram.size - (size_t)off;
	memcpy(f->data + off, buf, n);
	atomic_fetch_sub_explicit(&f->writers, 1, memory_order_relaxed);
	fuse_reply_write(req, n);
}

static void cc_ok(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	(void)ino;
	(void)fi;
	fuse_reply_err(req, 0);
}

static void cc_fsync(fuse_req_t req, fuse_ino_t ino, int datasync, struct fuse_file_info *fi)
{
	(void)datasync;
	cc_ok(req, ino, fi);
}

static const struct fuse_lowlevel_ops ops = {
	.init = cc_init,
	.lookup = cc_lookup,
	.getattr = cc_getattr,
	.setattr = cc_setattr,
	.readdir = cc_readdir,
	.open = cc_open,
	.read = cc_read,
	.write = cc_write,
	.flush = cc_ok,
	.release = cc_ok,
	.fsync = cc_fsync,
};

static int usage(void)
{
	fprintf(stderr, "usage: c-ceiling <mnt> <files> <bytes-per-file> [threads] [parallel-writes 0|1]\n");
	return 2;
}

int main(int argc, char **argv)
{
	if (argc < 4 || argc > 6)
		return usage();
	const char *mnt = argv[1];
	char *end;
	unsigned long files = strtoul(argv[2], &end, 10);
	if (*end || files < 1 || files > 1024)
		return usage();
	unsigned long long size = strtoull(argv[3], &end, 10);
	if (*end || size < 1)
		return usage();
	unsigned long threads = argc > 4 ? strtoul(argv[4], &end, 10) : 16;
	if ((argc > 4 && *end) || threads < 1 || threads > 1024)
		return usage();
	ram.parallel = argc > 5 ? strcmp(argv[5], "0") != 0 : 1;
	ram.files = (unsigned)files;
	ram.size = (size_t)size;
	ram.uid = getuid();
	ram.gid = getgid();
	ram.file = calloc(files, sizeof *ram.file);
	if (!ram.file)
		return 1;
	for (unsigned i = 0; i < ram.files; i++) {
		/* Anonymous memory: zero pages until written, like Buffer.alloc. */
		ram.file[i].data = mmap(NULL, ram.size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		if (ram.file[i].data == MAP_FAILED) {
			perror("c-ceiling: mmap");
			return 1;
		}
	}

	/* The node ceiling's and fcfs's kernel-side options; max_read matches max_write. */
	char *fargv[] = {argv[0], "-o", "default_permissions,fsname=c-ceiling,subtype=c-ceiling,max_read=1048576", NULL};
	struct fuse_args args = FUSE_ARGS_INIT(3, fargv);
	struct fuse_session *se = fuse_session_new(&args, &ops, sizeof ops, NULL);
	if (!se)
		return 1;
	int rc = 1;
	if (fuse_set_signal_handlers(se) != 0)
		goto out_destroy;
	if (fuse_session_mount(se, mnt) != 0)
		goto out_signals;
	printf("c-ceiling mounted at %s (libfuse %s, %lu threads, clone_fd, max_write %d, parallel direct writes %s)\n", mnt, fuse_pkgversion(), threads,
	       MAX_REQUEST, ram.parallel ? "on" : "off");
	fflush(stdout);

	struct fuse_loop_config *cfg = fuse_loop_cfg_create();
	fuse_loop_cfg_set_clone_fd(cfg, 1);
	fuse_loop_cfg_set_max_threads(cfg, (unsigned)threads);
	rc = fuse_session_loop_mt(se, cfg) == 0 ? 0 : 1;
	fuse_loop_cfg_destroy(cfg);
	fuse_session_unmount(se);
	fprintf(stderr, "c-ceiling: largest READ %zu, largest WRITE %zu, most WRITEs at once on one file %d\n", atomic_load(&ram.max_read), atomic_load(&ram.max_write),
		atomic_load(&ram.peak_writers));
out_signals:
	fuse_remove_signal_handlers(se);
out_destroy:
	fuse_session_destroy(se);
	return rc;
}
