/*
 * The Windows platform layer: named pipes behind the same seam as the Unix sockets.
 *
 * Descriptors. The core speaks of `int fd` and expects Unix-like non-blocking calls. Here an
 * fd is an index into a process-wide table of objects (the slots are reused lowest-first, so
 * the loop's watcher array stays small):
 *  - a pipe end (client or accepted): the HANDLE, opened with FILE_FLAG_OVERLAPPED; one
 *    overlapped ReadFile at a time into an internal 64 KiB read-ahead buffer, and one
 *    overlapped WriteFile at a time of a private copy of the caller's bytes;
 *  - a listener: listen_backlog_size pipe instances, each waiting in an overlapped
 *    ConnectNamedPipe, so that a burst of clients finds instances ready instead of
 *    ERROR_PIPE_BUSY; an instance that a client reached is what accept() hands out, and a
 *    fresh instance takes its place;
 *  - a loop's wakeup (PostQueuedCompletionStatus on the loop's port).
 *
 * Readiness is emulated the way the core expects it from poll(): a pipe is readable when a
 * read completed with data, end of stream or an error still to be reported, and writable when
 * no write is outstanding. lsock__plat_read/write copy from/to the buffers and return -EAGAIN
 * while the operation is in flight, so the core's state machine runs unchanged.
 *
 * ---- Lifetime of overlapped I/O: the rules ----------------------------------------------
 *
 * Operations. Every overlapped call is an operation record (wop): a pipe end has one for its
 * read (rd), one for its write (wr) and, while it is a listener's waiting instance, one for
 * its ConnectNamedPipe (conn). A record owns its OVERLAPPED, its buffer (rd: the read-ahead
 * buffer; wr: the copy being written; conn: none) and its own manual-reset event, which is the
 * OVERLAPPED's hEvent and which nothing but that operation's completion ever signals. At most
 * one operation per record is in flight; `pending` says that one was started and its result
 * not yet taken.
 *
 * Completion. An operation has completed when its OVERLAPPED's status is no longer
 * STATUS_PENDING (HasOverlappedIoCompleted): Windows (and Wine) write the data and then the
 * status, and only then signal the event and queue a packet to a completion port. So the
 * status of its own OVERLAPPED, or its own event, tells whether one operation is over; a
 * shared event never does, and nothing here waits on an event another operation can signal.
 * A completion packet is only a hint that names an object by table slot and generation
 * (iocp.c): its OVERLAPPED pointer is never followed, so a packet for an object that is gone
 * is harmless.
 *
 * Open objects. While the core holds the descriptor, the object, its records and buffers are
 * touched only by the thread that uses the descriptor (one thread at a time, by the seam's
 * rule), which starts operations and takes their results (harvest_*). The loop's thread does
 * that for a watched object; a blocking wait (lsock__plat_wait) waits on the events of the
 * operations in flight it cares about (64 at most in one wait: a listener with more waiting
 * instances looks at all of them again every WAIT_SLICE_MS). lsock__plat_wakeup_signal is the
 * one call from any thread, and touches only the wakeup's flag, event and port.
 *
 * Closing. lsock__plat_close takes the descriptor out of the table first, so no packet or
 * call reaches the object again, and then only requests: CancelIoEx on each operation in
 * flight, except a write that may linger (below); unless a write lingers it also closes the
 * HANDLE at once (the peer sees the end, a listener's name is free; what is in flight
 * completes all the same). An operation whose completion is in by then is over (Windows completes a
 * cancelled pipe operation inside CancelIoEx; under Wine a zero-time wait on the operation's
 * own event lets the cancellation in, when this thread started the operation). The object
 * counts the operations still in flight (`inflight`, plus one for the closing call itself),
 * and each gets a thread-pool wait on its own event. The memory (the object, every
 * OVERLAPPED, buffer and event) is freed, and the HANDLE closed if still open, by whoever
 * drops `inflight` to zero: the closing call when nothing was left in flight, else the
 * thread-pool callback of the last completion. From the close on, only those callbacks touch
 * the object, each its own record, with `inflight` and `stop_drain` shared through
 * interlocked operations. A thread-pool wait that cannot be created falls back to cancelling
 * the operation and waiting on its own event.
 *
 * Lingering. A graceful close of a pipe end whose write is still in flight leaves the write
 * running, so that bytes the core counted as written reach the peer as a Unix socket's
 * buffered bytes do, but not forever: the write gets the linger time (lsock_socket_set_linger,
 * or LINGER_DEFAULT_MS when none is set) and is cancelled when it runs out, and meanwhile the
 * end reads and drops whatever the peer sends, so that two ends closing with writes in flight
 * to each other both complete. An abort (linger 0) cancels the write at once. When the write
 * is over the draining read is cancelled.
 *
 * Errors travel as -errno values (the constants of the C runtime), mapped from Win32 codes
 * by win_errno(), so the core's error mapping is the same as on Unix.
 */
#include "win.h"

#include <aclapi.h>
#include <sddl.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifndef PIPE_REJECT_REMOTE_CLIENTS
#define PIPE_REJECT_REMOTE_CLIENTS 0x00000008
#endif

#define RBUF_SIZE     65536
#define WCHUNK_MAX    (256 * 1024)
#define PIPE_BUF_SIZE 65536
/* Windows limits a pipe name to 256 characters, "\\.\pipe\" included. */
#define PIPE_NAME_MAX 256
/* How long a closed pipe end waits for its write in flight when no linger time is set. */
#define LINGER_DEFAULT_MS 30000
/* A blocking wait on more operations than WaitForMultipleObjects takes looks again this
 * often. */
#define WAIT_SLICE_MS 10

enum { OBJ_PIPE = 1, OBJ_LISTENER = 2, OBJ_WAKEUP = 3 };

typedef struct wobj wobj;

/* One overlapped operation: its OVERLAPPED, buffer, own event and, once its object is
 * closed, the thread-pool wait that observes its completion. */
typedef struct wop {
    OVERLAPPED ov;
    HANDLE ev; /* manual-reset, ov.hEvent: signalled by this operation's completion only */
    int pending;
    char *buf;
    size_t cap;
    PTP_WAIT wait;
    wobj *owner;
} wop;

struct wobj {
    int kind;
    int fd;
    HANDLE volatile port; /* completion port the handles are associated with, or NULL */

    /* pipe */
    HANDLE h; /* INVALID_HANDLE_VALUE while a client waits for a free instance */
    int server_end;
    wobj *listener; /* set while this is an instance waiting for a client */
    wop conn;       /* ConnectNamedPipe of a waiting instance */
    int cdone;
    wop rd;
    DWORD rlen, rpos;
    int reof, rerr;
    wop wr;
    int werr;
    /* descriptor passing (see "Handles in the stream" below) */
    int framed;
    int hello_sent, hello_seen; /* the stream's first 4 bytes, FRAME_HELLO, each way */
    HANDLE peer_proc;           /* the peer's process, opened for PROCESS_DUP_HANDLE */
    int peer_ok; /* handle records from the peer: 0 not checked yet, 1 taken, -1 refused */
    unsigned char fbuf[8];
    int fhave;          /* bytes of a header or handle value gathered in fbuf */
    uint32_t data_left; /* bytes of the current data record not yet delivered */
    int hleft;          /* handle values of the current handle record still to come */
    int hq_n;           /* handles parsed, for the next data byte */
    intptr_t hq[LSOCK__FDS_MAX];
    int wr_hn; /* handles (the peer's) in the write in flight, until it is known to be through */
    intptr_t wr_hv[LSOCK__FDS_MAX];
    /* closed, with operations still in flight (see the rules above) */
    volatile LONG inflight;
    volatile LONG stop_drain; /* no write lingers (any more): the end reads no more */

    /* listener */
    wchar_t *wname;
    wobj **inst;
    int ninst;
    int refill_err; /* why the last new instance could not be made (errno), 0 if it could */
    SECURITY_ATTRIBUTES sa;
    int has_sa;
    void *sa_mem;

    /* wakeup */
    HANDLE ev;
    volatile LONG signalled;
};

int lsock__test_pipe_instance_fail;

/* ---- the table of objects -------------------------------------------------------------- */

#define CHUNK   256
#define NCHUNKS 4096 /* up to a million objects */

typedef struct slot {
    wobj *volatile obj;
    volatile LONG gen;
} slot;

static slot *volatile chunks[NCHUNKS];
static SRWLOCK table_lock = SRWLOCK_INIT;
static int *free_fds;
static int nfree, capfree, next_fd;

static slot *slot_of(int fd)
{
    if (fd < 0 || fd >= CHUNK * NCHUNKS) return NULL;
    slot *c = chunks[fd / CHUNK];
    return c ? &c[fd % CHUNK] : NULL;
}

static wobj *get(int fd)
{
    slot *s = slot_of(fd);
    return s ? s->obj : NULL;
}

/* Takes a free slot for o: the lowest freed one first. -1 when full or out of memory. */
static int table_add(wobj *o)
{
    int fd = -1;
    AcquireSRWLockExclusive(&table_lock);
    if (nfree > 0) {
        int best = 0;
        for (int i = 1; i < nfree; i++)
            if (free_fds[i] < free_fds[best]) best = i;
        fd = free_fds[best];
        free_fds[best] = free_fds[--nfree];
    } else if (next_fd < CHUNK * NCHUNKS) {
        if (!chunks[next_fd / CHUNK]) {
            slot *c = calloc(CHUNK, sizeof *c);
            if (c) chunks[next_fd / CHUNK] = c;
        }
        if (chunks[next_fd / CHUNK]) fd = next_fd++;
    }
    if (fd >= 0) {
        slot *s = &chunks[fd / CHUNK][fd % CHUNK];
        InterlockedIncrement(&s->gen);
        o->fd = fd;
        s->obj = o;
    }
    ReleaseSRWLockExclusive(&table_lock);
    return fd;
}

static void table_remove(int fd)
{
    AcquireSRWLockExclusive(&table_lock);
    slot *s = slot_of(fd);
    if (s && s->obj) {
        s->obj = NULL;
        InterlockedIncrement(&s->gen);
        if (nfree == capfree) {
            int cap = capfree ? capfree * 2 : 64;
            int *f = realloc(free_fds, (size_t)cap * sizeof *f);
            if (f) {
                free_fds = f;
                capfree = cap;
            }
        }
        if (nfree < capfree) free_fds[nfree++] = fd; /* else the slot is leaked, not reused */
    }
    ReleaseSRWLockExclusive(&table_lock);
}

ULONG_PTR lsock__win_key(int fd)
{
    slot *s = slot_of(fd);
    return (ULONG_PTR)(unsigned)fd | ((ULONG_PTR)(unsigned)(s ? s->gen : 0) << 32);
}

static wobj *from_key(ULONG_PTR key)
{
    int fd = (int)(key & 0x7fffffff);
    slot *s = slot_of(fd);
    if (!s || (unsigned)s->gen != (unsigned)(key >> 32)) return NULL;
    return s->obj;
}

/* ---- errors ----------------------------------------------------------------------------- */

static int win_errno(DWORD e)
{
    switch (e) {
    case ERROR_FILE_NOT_FOUND:
    case ERROR_PATH_NOT_FOUND:
    case ERROR_BAD_PATHNAME:
    case ERROR_INVALID_NAME:
    case ERROR_BAD_NETPATH:
        return ENOENT;
    case ERROR_ACCESS_DENIED:
    case ERROR_PRIVILEGE_NOT_HELD:
        return EACCES;
    case ERROR_PIPE_BUSY:
        return EAGAIN;
    case ERROR_BROKEN_PIPE:
    case ERROR_NO_DATA:
    case ERROR_PIPE_NOT_CONNECTED:
        return EPIPE;
    case ERROR_NETNAME_DELETED:
    case ERROR_OPERATION_ABORTED:
        return ECONNRESET;
    case ERROR_NOT_ENOUGH_MEMORY:
    case ERROR_OUTOFMEMORY:
    case ERROR_NO_SYSTEM_RESOURCES:
    case ERROR_NONPAGED_SYSTEM_RESOURCES:
    case ERROR_WORKING_SET_QUOTA:
        return ENOMEM;
    case ERROR_TOO_MANY_OPEN_FILES:
        return EMFILE;
    case ERROR_FILENAME_EXCED_RANGE:
        return ENAMETOOLONG;
    case ERROR_SEM_TIMEOUT:
        return ETIMEDOUT;
    case ERROR_INVALID_HANDLE:
        return EBADF;
    case ERROR_PIPE_LOCAL:
    case ERROR_PIPE_CONNECTED:
        return ECONNREFUSED;
    default:
        return EIO;
    }
}

static int is_eof(DWORD e)
{
    return e == ERROR_BROKEN_PIPE || e == ERROR_PIPE_NOT_CONNECTED || e == ERROR_NO_DATA ||
           e == ERROR_HANDLE_EOF;
}

const char *lsock__plat_strerror(int err)
{
    switch (err < 0 ? -err : err) {
    case 0:
        return "Success";
    case ENOENT:
        return "No such pipe";
    case EACCES:
        return "Access denied";
    case EAGAIN:
        return "All pipe instances are busy";
    case EPIPE:
        return "The pipe has been ended";
    case ECONNRESET:
        return "Connection reset";
    case ECONNREFUSED:
        return "Connection refused";
    case ENOMEM:
        return "Not enough memory";
    case EMFILE:
        return "Too many open handles";
    case ENAMETOOLONG:
        return "Name too long";
    case ETIMEDOUT:
        return "Timed out";
    case EBADF:
        return "Invalid handle";
    case EADDRINUSE:
        return "A server is listening on this name";
    case ENOTSUP:
        return "Not supported on Windows";
    case EINVAL:
        return "Invalid argument";
    case ENOTSOCK:
        return "Not a pipe";
    default:
        return "I/O error";
    }
}

/* ---- time ------------------------------------------------------------------------------- */

uint64_t lsock__now_us(void)
{
    static LARGE_INTEGER freq; /* benign race: every thread computes the same value */
    LARGE_INTEGER now;
    if (freq.QuadPart == 0) QueryPerformanceFrequency(&freq);
    QueryPerformanceCounter(&now);
    return (uint64_t)(now.QuadPart / freq.QuadPart) * 1000000u +
           (uint64_t)(now.QuadPart % freq.QuadPart) * 1000000u / (uint64_t)freq.QuadPart;
}

uint64_t lsock__now_ms(void)
{
    return lsock__now_us() / 1000u;
}

void lsock__plat_sleep_ms(int ms)
{
    Sleep(ms < 0 ? INFINITE : (DWORD)ms);
}

/* ---- names ------------------------------------------------------------------------------ */

size_t lsock__plat_name_max(void)
{
    return PIPE_NAME_MAX;
}

const char *lsock__plat_name_limit_text(void)
{
    return "name too long: the limit is 256 characters for a pipe name, \\\\.\\pipe\\ included";
}

/* UTF-8 to a malloc'd UTF-16 string; NULL with *err set. */
static wchar_t *widen(const char *s, int *err)
{
    int n = MultiByteToWideChar(CP_UTF8, MB_ERR_INVALID_CHARS, s, -1, NULL, 0);
    if (n <= 0) {
        *err = ENOENT;
        return NULL;
    }
    if (n - 1 > PIPE_NAME_MAX) {
        *err = ENAMETOOLONG;
        return NULL;
    }
    wchar_t *w = malloc((size_t)n * sizeof *w);
    if (!w) {
        *err = ENOMEM;
        return NULL;
    }
    MultiByteToWideChar(CP_UTF8, MB_ERR_INVALID_CHARS, s, -1, w, n);
    return w;
}

/* ---- objects and operations ------------------------------------------------------------ */

static int op_init(wop *op, wobj *owner)
{
    op->owner = owner;
    op->ev = CreateEventW(NULL, TRUE, FALSE, NULL);
    return op->ev ? 0 : -1;
}

/* Only once nothing of op is in flight (see the rules at the top). */
static void op_free(wop *op)
{
    if (op->wait) CloseThreadpoolWait(op->wait);
    if (op->ev) CloseHandle(op->ev);
    free(op->buf);
    op->wait = NULL;
    op->ev = NULL;
    op->buf = NULL;
}

/* A fresh OVERLAPPED for the next operation of op, signalling op's own event. */
static OVERLAPPED *op_arm(wop *op)
{
    memset(&op->ov, 0, sizeof op->ov);
    op->ov.hEvent = op->ev;
    return &op->ov;
}

/* Whether op's operation has completed: its status is in (written after its data). */
static int op_completed(const wop *op)
{
    return HasOverlappedIoCompleted(&op->ov);
}

static wobj *obj_new(int kind)
{
    wobj *o = calloc(1, sizeof *o);
    if (!o) return NULL;
    o->kind = kind;
    o->h = INVALID_HANDLE_VALUE;
    int ok = kind == OBJ_PIPE     ? op_init(&o->rd, o) == 0 && op_init(&o->wr, o) == 0
             : kind == OBJ_WAKEUP ? (o->ev = CreateEventW(NULL, TRUE, FALSE, NULL)) != NULL
                                  : 1;
    if (!ok || table_add(o) < 0) {
        op_free(&o->rd);
        op_free(&o->wr);
        if (o->ev) CloseHandle(o->ev);
        free(o);
        return NULL;
    }
    return o;
}

static const unsigned char FRAME_HELLO[4] = {'L', 'S', 'F', 'D'};

static void close_parsed_handles(wobj *o);

static void release_write_handles(wobj *o, int delivered);

static void obj_free(wobj *o)
{
    close_parsed_handles(o);
    /* A write still holding handles ended after the close: through only if it succeeded. */
    if (o->wr_hn > 0) release_write_handles(o, o->wr.ov.Internal == 0);
    if (o->peer_proc) CloseHandle(o->peer_proc);
    op_free(&o->conn);
    op_free(&o->rd);
    op_free(&o->wr);
    free(o->wname);
    free(o->inst);
    free(o->sa_mem);
    if (o->ev) CloseHandle(o->ev);
    free(o);
}

static void post(wobj *o, int fd_for_key)
{
    HANDLE port = o->port;
    if (port) PostQueuedCompletionStatus(port, 0, lsock__win_key(fd_for_key), NULL);
}

static int associate(wobj *o, HANDLE port)
{
    if (o->h == INVALID_HANDLE_VALUE) return 0;
    if (!CreateIoCompletionPort(o->h, port, lsock__win_key(o->fd), 0))
        return -win_errno(GetLastError());
    o->port = port;
    return 0;
}

/* ---- pipe ends: reading and writing ---------------------------------------------------- */

static void harvest_read(wobj *o)
{
    if (!o->rd.pending || !op_completed(&o->rd)) return;
    DWORD n = 0;
    o->rd.pending = 0;
    o->rlen = o->rpos = 0;
    if (GetOverlappedResult(o->h, &o->rd.ov, &n, FALSE) || GetLastError() == ERROR_MORE_DATA) {
        o->rlen = n;
        return;
    }
    DWORD e = GetLastError();
    if (is_eof(e))
        o->reof = 1;
    else if (e != ERROR_OPERATION_ABORTED)
        o->rerr = win_errno(e);
}

/* Keeps one read outstanding while the read-ahead buffer is empty. */
static void start_read(wobj *o)
{
    if (o->h == INVALID_HANDLE_VALUE || o->listener || o->rd.pending || o->rpos < o->rlen ||
        o->reof || o->rerr)
        return;
    if (!o->rd.buf && !(o->rd.buf = malloc(RBUF_SIZE))) {
        o->rerr = ENOMEM;
        return;
    }
    o->rlen = o->rpos = 0;
    if (!ReadFile(o->h, o->rd.buf, RBUF_SIZE, NULL, op_arm(&o->rd))) {
        DWORD e = GetLastError();
        if (e != ERROR_IO_PENDING && e != ERROR_MORE_DATA) {
            if (is_eof(e))
                o->reof = 1;
            else
                o->rerr = win_errno(e);
            /* A call that fails at once queues no completion: tell the loop ourselves. */
            post(o, o->fd);
            return;
        }
    }
    o->rd.pending = 1;
    harvest_read(o); /* completed at once: the data is there now */
}

/* The handles of a write that did not go through (failed, cancelled): the copies made in the
 * peer's process are closed there, since no byte will tell the peer of them. */
static void release_write_handles(wobj *o, int delivered)
{
    if (!delivered && o->peer_proc)
        for (int i = 0; i < o->wr_hn; i++)
            DuplicateHandle(o->peer_proc, (HANDLE)o->wr_hv[i], NULL, NULL, 0, FALSE,
                            DUPLICATE_CLOSE_SOURCE);
    o->wr_hn = 0;
}

static void harvest_write(wobj *o)
{
    if (!o->wr.pending || !op_completed(&o->wr)) return;
    DWORD n = 0;
    o->wr.pending = 0;
    if (!GetOverlappedResult(o->h, &o->wr.ov, &n, FALSE)) {
        DWORD e = GetLastError();
        o->werr = is_eof(e) ? EPIPE : win_errno(e);
    }
    release_write_handles(o, o->werr == 0);
}

static unsigned pipe_ready(wobj *o)
{
    if (o->h == INVALID_HANDLE_VALUE || o->listener) return 0;
    harvest_read(o);
    harvest_write(o);
    unsigned r = 0;
    if (o->rpos < o->rlen || o->reof || o->rerr) r |= LSOCK__READABLE;
    if (!o->wr.pending) r |= LSOCK__WRITABLE;
    return r;
}

/* Loop-less sockets keep polling their pipe's read-ahead on Windows: there is no blocking
 * mode to switch to, so lsock__plat_set_blocking declines and the core never blocks in a
 * read. */
/* A read copies from the pipe's read-ahead buffer (rd) whatever lsock does: reading straight
 * into the application's buffer would save no copy. */
int64_t lsock__plat_bytes_in_kernel(int fd)
{
    (void)fd;
    return -1;
}

/* A pipe's buffer is fixed when the server creates the instance. */
void lsock__plat_grow_send_buffer(int fd)
{
    (void)fd;
}

int lsock__plat_set_blocking(int fd)
{
    (void)fd;
    return -ENOTSUP;
}

int64_t lsock__plat_read_blocking(int fd, void *buf, size_t n, lsock__fds_in *in)
{
    return lsock__plat_read(fd, buf, n, in);
}

/*
 * Handles in the stream. A pipe has no side channel for handles, so a connection that carries
 * them (LSOCK_PASS_DESCRIPTORS on both ends: lsock__plat_pass_descriptors) is framed both ways.
 * Each direction starts with the 4 bytes "LSFD" (a peer that does not frame its stream, lsock
 * without the option or a Qt program, is told apart at its first bytes), then records:
 *   data record:   u32 little-endian length (1 to 0x7FFFFFFF), then that many bytes;
 *   handle record: u32 0x80000000 | count (1 to LSOCK__FDS_MAX), then count u64 values.
 * A handle record's values are handles the sender has already duplicated into this process
 * (DuplicateHandle into the peer, lsock__plat_dup_descriptor); they go with the first byte of
 * the data record after them, which a read delivers first, with them (in->last = 0). Any
 * value could be named in a stream, so records are taken only from a peer of this process's
 * own user, who may duplicate handles into it anyway; from another, the read fails with
 * -EACCES. A malformed record fails it with -EPROTO. Handles parsed and never delivered are
 * closed with the pipe end, as are those in records still in the read-ahead buffer.
 */
static uint32_t le32(const unsigned char *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static uint64_t le64(const unsigned char *p)
{
    return (uint64_t)le32(p) | (uint64_t)le32(p + 4) << 32;
}

static void put_le32(unsigned char *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (unsigned char)(v >> (8 * i));
}

static void close_parsed_handles(wobj *o)
{
    for (int i = 0; i < o->hq_n; i++)
        CloseHandle((HANDLE)o->hq[i]);
    o->hq_n = 0;
}

/* Takes one byte of a header or handle value: 0, or the errno that ends the stream. */
static int parse_byte(wobj *o, unsigned char b)
{
    o->fbuf[o->fhave++] = b;
    if (!o->hello_seen) {
        if (o->fhave < 4) return 0;
        o->fhave = 0;
        if (memcmp(o->fbuf, FRAME_HELLO, 4) != 0) return EPROTO;
        o->hello_seen = 1;
        return 0;
    }
    if (o->hleft > 0) {
        if (o->fhave < 8) return 0;
        o->fhave = 0;
        o->hleft--;
        o->hq[o->hq_n++] = (intptr_t)le64(o->fbuf);
        return 0;
    }
    if (o->fhave < 4) return 0;
    o->fhave = 0;
    uint32_t h = le32(o->fbuf);
    if (!(h & 0x80000000u)) {
        if (h == 0) return EPROTO;
        o->data_left = h;
        return 0;
    }
    uint32_t count = h & 0x7FFFFFFFu;
    if (count == 0 || count > (uint32_t)(LSOCK__FDS_MAX - o->hq_n)) return EPROTO;
    if (o->peer_ok == 0) {
        char detail[160];
        o->peer_ok = lsock__plat_peer_same_user(o->fd, detail, sizeof detail) == 1 ? 1 : -1;
    }
    if (o->peer_ok < 0) return EACCES;
    o->hleft = (int)count;
    return 0;
}

static int64_t read_framed(wobj *o, char *buf, size_t n, lsock__fds_in *in)
{
    size_t out = 0;
    while (out < n) {
        if (o->rpos >= o->rlen) {
            if (out > 0 || o->reof || o->rerr) break;
            start_read(o); /* completes at once when the data is there */
            if (o->rpos >= o->rlen) break;
        }
        if (o->data_left == 0) {
            int err = parse_byte(o, (unsigned char)o->rd.buf[o->rpos++]);
            if (err) {
                close_parsed_handles(o);
                o->rerr = err;
                break;
            }
            continue;
        }
        if (o->hq_n > 0) {
            if (out > 0) { /* they go with the first byte of the next read */
                in->more = 1;
                break;
            }
            memcpy(in->fd, o->hq, (size_t)o->hq_n * sizeof o->hq[0]);
            in->count = o->hq_n;
            o->hq_n = 0;
        }
        size_t m = o->rlen - o->rpos;
        if (m > o->data_left) m = o->data_left;
        if (m > n - out) m = n - out;
        memcpy(buf + out, o->rd.buf + o->rpos, m);
        o->rpos += (DWORD)m;
        o->data_left -= (uint32_t)m;
        out += m;
    }
    if (o->rpos >= o->rlen) start_read(o); /* read ahead */
    if (out > 0) return (int64_t)out;
    if (o->rerr) return -o->rerr;
    if (o->reof) {
        close_parsed_handles(o); /* no byte will come for them */
        return 0;
    }
    return -EAGAIN;
}

/* Parses what is left in the read-ahead buffer only to close the handles in it. */
static void skip_buffered(wobj *o)
{
    while (o->rpos < o->rlen && !o->rerr) {
        if (o->data_left > 0) {
            size_t m = o->rlen - o->rpos;
            if (m > o->data_left) m = o->data_left;
            o->rpos += (DWORD)m;
            o->data_left -= (uint32_t)m;
            continue;
        }
        if (parse_byte(o, (unsigned char)o->rd.buf[o->rpos++])) break;
        if (o->data_left > 0) close_parsed_handles(o);
    }
}

/* The pipe end closes with bytes unread: the handles in them are this process's, and nobody
 * will take them. Those in the read-ahead buffer are closed, then those in what the pipe
 * still holds (read now, up to DRAIN_MAX bytes; a read in flight has found the pipe empty). */
#define DRAIN_MAX (4 * 1024 * 1024)
static void close_buffered_handles(wobj *o)
{
    if (!o->framed) return;
    if (o->rd.pending || (!o->rd.buf && !(o->rd.buf = malloc(RBUF_SIZE)))) {
        close_parsed_handles(o);
        return;
    }
    skip_buffered(o);
    for (size_t drained = 0; drained < DRAIN_MAX && !o->rerr && o->h != INVALID_HANDLE_VALUE;) {
        DWORD avail = 0, n = 0;
        if (!PeekNamedPipe(o->h, NULL, 0, NULL, &avail, NULL) || avail == 0) break;
        if (!ReadFile(o->h, o->rd.buf, RBUF_SIZE, NULL, op_arm(&o->rd)) &&
            GetLastError() != ERROR_IO_PENDING && GetLastError() != ERROR_MORE_DATA)
            break;
        if (!GetOverlappedResult(o->h, &o->rd.ov, &n, TRUE) && GetLastError() != ERROR_MORE_DATA)
            break;
        o->rpos = 0;
        o->rlen = n;
        drained += n;
        skip_buffered(o);
    }
    o->rpos = o->rlen = 0;
    close_parsed_handles(o);
}

int64_t lsock__plat_read2(int fd, void *a, size_t an, void *b, size_t bn, lsock__fds_in *in)
{
    (void)b;
    (void)bn;
    return lsock__plat_read(fd, a, an, in);
}

int64_t lsock__plat_read(int fd, void *buf, size_t n, lsock__fds_in *in)
{
    in->count = 0;
    in->truncated = 0;
    in->last = 0;
    in->more = 0;
    wobj *o = get(fd);
    if (!o || o->kind != OBJ_PIPE || o->h == INVALID_HANDLE_VALUE) return -EBADF;
    harvest_read(o);
    if (o->framed) return read_framed(o, buf, n, in);
    if (o->rpos >= o->rlen && !o->reof && !o->rerr) start_read(o);
    if (o->rpos < o->rlen) {
        size_t m = o->rlen - o->rpos;
        if (m > n) m = n;
        memcpy(buf, o->rd.buf + o->rpos, m);
        o->rpos += (DWORD)m;
        if (o->rpos >= o->rlen) start_read(o); /* read ahead */
        return (int64_t)m;
    }
    if (o->reof) return 0;
    if (o->rerr) return -o->rerr;
    return -EAGAIN;
}

/* One WriteFile of the buffers gathered (up to WCHUNK_MAX bytes) into the write's own buffer,
 * which the operation needs for as long as it is in flight anyway. */
int64_t lsock__plat_writev(int fd, const lsock_iovec *iov, int n)
{
    wobj *o = get(fd);
    if (!o || o->kind != OBJ_PIPE || o->h == INVALID_HANDLE_VALUE) return -EBADF;
    harvest_write(o);
    if (o->werr) return -o->werr;
    if (o->wr.pending) return -EAGAIN;
    size_t total = 0;
    for (int i = 0; i < n && total < WCHUNK_MAX; i++)
        total += iov[i].len;
    if (total == 0) return 0;
    size_t m = total > WCHUNK_MAX ? WCHUNK_MAX : total;
    /* A framed stream: the data record's header, after the stream's first 4 bytes. */
    size_t hello = o->framed && !o->hello_sent ? 4 : 0;
    size_t head = o->framed ? hello + 4 : 0;
    if (o->wr.cap < head + m) {
        size_t cap = head + m < 65536 ? 65536 : head + m;
        char *b = realloc(o->wr.buf, cap);
        if (!b) return -ENOMEM;
        o->wr.buf = b;
        o->wr.cap = cap;
    }
    if (hello) memcpy(o->wr.buf, FRAME_HELLO, 4);
    if (head) put_le32((unsigned char *)o->wr.buf + hello, (uint32_t)m);
    for (size_t i = 0, at = 0; at < m; i++) {
        size_t k = iov[i].len < m - at ? iov[i].len : m - at;
        memcpy(o->wr.buf + head + at, iov[i].base, k);
        at += k;
    }
    if (!WriteFile(o->h, o->wr.buf, (DWORD)(head + m), NULL, op_arm(&o->wr))) {
        DWORD e = GetLastError();
        if (e != ERROR_IO_PENDING) {
            o->werr = is_eof(e) ? EPIPE : win_errno(e);
            return -o->werr;
        }
    }
    o->wr.pending = 1;
    if (o->framed) o->hello_sent = 1;
    harvest_write(o);
    return (int64_t)m;
}

int64_t lsock__plat_write(int fd, const void *buf, size_t n)
{
    lsock_iovec one = {buf, n};
    return lsock__plat_writev(fd, &one, 1);
}

int lsock__plat_write_in_flight(int fd)
{
    wobj *o = get(fd);
    if (!o || o->kind != OBJ_PIPE || o->h == INVALID_HANDLE_VALUE) return 0;
    harvest_write(o);
    return o->wr.pending; /* ended with the process, unlike what a Unix kernel took */
}

/* ---- closing ---------------------------------------------------------------------------- */

/* The end of a closed pipe end: the last of its operations is over. */
static void pipe_finish(wobj *o)
{
    if (o->h != INVALID_HANDLE_VALUE) CloseHandle(o->h);
    obj_free(o);
}

/* Drops one of the closed object's references; the last one frees it. */
static void pipe_release(wobj *o)
{
    if (InterlockedDecrement(&o->inflight) == 0) pipe_finish(o);
}

/* While a closed end's write lingers: reads again, dropping the data, so that a peer that
 * writes to this end too is not stuck with its own write. 1 when a read is in flight. */
static int drain_read(wobj *o)
{
    if (!o->rd.buf && !(o->rd.buf = malloc(RBUF_SIZE))) return 0;
    if (!ReadFile(o->h, o->rd.buf, RBUF_SIZE, NULL, op_arm(&o->rd)) &&
        GetLastError() != ERROR_IO_PENDING && GetLastError() != ERROR_MORE_DATA)
        return 0; /* end of stream or broken: the write ends too */
    /* The write may have completed meanwhile and cancelled the previous read only. */
    if (InterlockedCompareExchange(&o->stop_drain, 0, 0)) CancelIoEx(o->h, &o->rd.ov);
    return 1;
}

/* Arms op's thread-pool wait on its own event; timeout_ms < 0: none. 0 or -1. */
static int watch_op(wop *op, PTP_WAIT_CALLBACK cb, int timeout_ms)
{
    if (!op->wait && !(op->wait = CreateThreadpoolWait(cb, op, NULL))) return -1;
    FILETIME ft, *due = NULL;
    if (timeout_ms >= 0) {
        ULARGE_INTEGER rel;
        rel.QuadPart = (ULONGLONG)(-(LONGLONG)timeout_ms * 10000); /* relative, 100 ns */
        ft.dwLowDateTime = rel.LowPart;
        ft.dwHighDateTime = rel.HighPart;
        due = &ft;
    }
    SetThreadpoolWait(op->wait, op->ev, due);
    return 0;
}

/* The thread-pool callback of a closed object's operation: its own event was signalled (its
 * completion is in), or the linger time of its write ran out. */
static VOID CALLBACK closed_op_done(PTP_CALLBACK_INSTANCE inst, PVOID ctx, PTP_WAIT wait,
                                    TP_WAIT_RESULT result)
{
    (void)inst;
    wop *op = ctx;
    wobj *o = op->owner;
    if (result == WAIT_TIMEOUT) { /* the write lingered long enough: cancel it */
        CancelIoEx(o->h, &op->ov);
        SetThreadpoolWait(wait, op->ev, NULL);
        return;
    }
    while (!op_completed(op))
        SwitchToThread(); /* the status is written before the event is signalled: no wait */
    if (op == &o->wr) {
        InterlockedExchange(&o->stop_drain, 1);
        CancelIoEx(o->h, &o->rd.ov); /* the draining read, if any, is done with */
    } else if (op == &o->rd && !InterlockedCompareExchange(&o->stop_drain, 0, 0)) {
        DWORD n = 0;
        BOOL got = GetOverlappedResult(o->h, &op->ov, &n, FALSE);
        if (got && o->framed) { /* dropped, but the handles in it are this process's */
            o->rpos = 0;
            o->rlen = n;
            skip_buffered(o);
            close_parsed_handles(o);
        }
        if (got && drain_read(o)) {
            SetThreadpoolWait(wait, op->ev, NULL);
            return;
        }
    }
    pipe_release(o); /* the last touch of o: another thread may free it now */
}

/* Whether an operation of a closed object is over after its cancellation. Windows completes
 * a cancelled pipe operation inside CancelIoEx; Wine delivers the cancellation to the thread
 * that started the operation when that thread waits, which the zero-time wait on the
 * operation's own event lets happen here. */
static int op_over(wop *op)
{
    WaitForSingleObject(op->ev, 0);
    return op_completed(op);
}

/*
 * Closes a pipe end (see the rules at the top): requests the cancellation of what is in
 * flight, except a write that may linger for linger_ms (0: none, an abort), and leaves the
 * freeing to whoever sees the last completion. Unless a write lingers, the HANDLE is closed
 * at once: the peer sees the end, and a listener's name is free, when this returns. The
 * caller has taken o out of the table.
 */
static void close_pipe(wobj *o, int linger_ms)
{
    if (o->framed && o->rd.pending) WaitForSingleObject(o->rd.ev, 0); /* see op_over() */
    harvest_read(o);
    close_buffered_handles(o);
    if (o->h == INVALID_HANDLE_VALUE) {
        obj_free(o);
        return;
    }
    wop *ops[3] = {&o->conn, &o->wr, &o->rd};
    int busy[3];
    for (int i = 0; i < 3; i++)
        busy[i] = ops[i]->pending && !op_completed(ops[i]);
    int linger = busy[1] && linger_ms != 0;
    if (linger && !busy[2]) busy[2] = drain_read(o); /* else the read in flight drains */
    if (!linger) {
        for (int i = 0; i < 3; i++)
            if (busy[i]) {
                CancelIoEx(o->h, &ops[i]->ov);
                busy[i] = !op_over(ops[i]);
            }
        CloseHandle(o->h); /* what is still in flight completes all the same */
        o->h = INVALID_HANDLE_VALUE;
    }
    LONG n = 1; /* this call's own reference */
    for (int i = 0; i < 3; i++)
        n += busy[i];
    o->inflight = n;
    o->stop_drain = !linger;
    for (int i = 0; i < 3; i++) {
        if (!busy[i]) continue;
        int timeout = linger && ops[i] == &o->wr ? linger_ms : -1;
        if (watch_op(ops[i], closed_op_done, timeout) == 0) continue;
        /* No thread-pool wait: no linger either. The write is over before the draining read
         * is cancelled (it restarts only from its callback). */
        if (ops[i] == &o->wr) InterlockedExchange(&o->stop_drain, 1);
        if (o->h != INVALID_HANDLE_VALUE) CancelIoEx(o->h, &ops[i]->ov);
        WaitForSingleObject(ops[i]->ev, INFINITE); /* its own event: its own completion */
        if (ops[i] == &o->wr && o->h != INVALID_HANDLE_VALUE) CancelIoEx(o->h, &o->rd.ov);
        pipe_release(o);
    }
    pipe_release(o);
}

static void close_listener(wobj *l)
{
    for (int i = 0; i < l->ninst; i++) {
        wobj *in = l->inst[i];
        if (!in) continue;
        table_remove(in->fd);
        close_pipe(in, 0);
    }
    obj_free(l);
}

void lsock__plat_close_linger(int fd, int linger_ms)
{
    wobj *o = get(fd);
    if (!o) return;
    if (o->kind == OBJ_PIPE && o->framed && o->peer_ok == 0 && o->h != INVALID_HANDLE_VALUE) {
        /* Whose handle values the unread bytes may hold (close_buffered_handles), asked
         * while the descriptor still names the pipe. */
        char detail[160];
        o->peer_ok = lsock__plat_peer_same_user(fd, detail, sizeof detail) == 1 ? 1 : -1;
    }
    table_remove(fd);
    if (o->kind == OBJ_PIPE)
        close_pipe(o, linger_ms < 0 ? LINGER_DEFAULT_MS : linger_ms);
    else if (o->kind == OBJ_LISTENER)
        close_listener(o);
    else
        obj_free(o);
}

/* One WriteFile of a handle record and a data record of one byte (see "Handles in the
 * stream"): the handles' values are already the peer's (lsock__plat_dup_descriptor). */
int64_t lsock__plat_write_fds(int fd, const void *buf, size_t n, const intptr_t *fds, int count)
{
    wobj *o = get(fd);
    if (!o || o->kind != OBJ_PIPE || o->h == INVALID_HANDLE_VALUE) return -EBADF;
    if (!o->framed) return -ENOTSUP;
    if (n == 0 || count < 1 || count > LSOCK__FDS_MAX) return -EINVAL;
    harvest_write(o);
    if (o->werr) return -o->werr;
    if (o->wr.pending) return -EAGAIN;
    size_t hello = o->hello_sent ? 0 : 4;
    size_t need = hello + 4 + (size_t)count * 8 + 4 + 1;
    if (o->wr.cap < need) {
        char *b = realloc(o->wr.buf, 65536);
        if (!b) return -ENOMEM;
        o->wr.buf = b;
        o->wr.cap = 65536;
    }
    unsigned char *p = (unsigned char *)o->wr.buf;
    memcpy(p, FRAME_HELLO, hello);
    p += hello;
    put_le32(p, 0x80000000u | (uint32_t)count);
    p += 4;
    for (int i = 0; i < count; i++, p += 8) {
        uint64_t v = (uint64_t)fds[i];
        put_le32(p, (uint32_t)v);
        put_le32(p + 4, (uint32_t)(v >> 32));
    }
    put_le32(p, 1);
    p[4] = *(const unsigned char *)buf;
    if (!WriteFile(o->h, o->wr.buf, (DWORD)need, NULL, op_arm(&o->wr))) {
        DWORD e = GetLastError();
        if (e != ERROR_IO_PENDING) {
            o->werr = is_eof(e) ? EPIPE : win_errno(e);
            return -o->werr;
        }
    }
    o->wr.pending = 1;
    o->hello_sent = 1;
    memcpy(o->wr_hv, fds, (size_t)count * sizeof fds[0]);
    o->wr_hn = count;
    harvest_write(o);
    return 1;
}

static int peer_pid(int fd, DWORD *pid);

/* While not 0, lsock__plat_dup_descriptor fails with this errno (tests: the access-denied
 * path, which Wine never takes). */
int lsock__test_dup_fail;

int lsock__plat_dup_descriptor(int fd, intptr_t handle, intptr_t *out)
{
    wobj *o = get(fd);
    if (!o || o->kind != OBJ_PIPE || o->h == INVALID_HANDLE_VALUE) return -EBADF;
    if (!o->framed) return -ENOTSUP;
    /* 0 is no handle, and negative values are pseudo handles (-1 this process, -2 this
     * thread, and the token ones), which DuplicateHandle would turn into real handles to this
     * process or thread in the peer: refused as no open handle, as -1 is on Unix. */
    if (handle <= 0) return -EBADF;
    if (lsock__test_dup_fail) return -lsock__test_dup_fail;
    if (!o->peer_proc) {
        DWORD pid = 0;
        int rc = peer_pid(fd, &pid);
        if (rc < 0) return rc;
        o->peer_proc = OpenProcess(PROCESS_DUP_HANDLE, FALSE, pid);
        if (!o->peer_proc) return -win_errno(GetLastError());
    }
    HANDLE theirs = NULL;
    if (!DuplicateHandle(GetCurrentProcess(), (HANDLE)handle, o->peer_proc, &theirs, 0, FALSE,
                         DUPLICATE_SAME_ACCESS)) {
        DWORD e = GetLastError();
        return e == ERROR_INVALID_HANDLE ? -EBADF : -win_errno(e);
    }
    *out = (intptr_t)theirs;
    return 0;
}

void lsock__plat_release_descriptor(int fd, intptr_t handle, int sent)
{
    wobj *o = get(fd);
    if (sent || !o || !o->peer_proc) return; /* sent: the peer's to close */
    DuplicateHandle(o->peer_proc, (HANDLE)handle, NULL, NULL, 0, FALSE, DUPLICATE_CLOSE_SOURCE);
}

void lsock__plat_pass_descriptors(int fd)
{
    wobj *o = get(fd);
    if (o && o->kind == OBJ_PIPE) o->framed = 1;
}

void lsock__plat_close_descriptor(intptr_t handle)
{
    if (handle != 0 && (HANDLE)handle != INVALID_HANDLE_VALUE) CloseHandle((HANDLE)handle);
}

void lsock__plat_close(int fd)
{
    lsock__plat_close_linger(fd, -1);
}

/* ---- connecting ------------------------------------------------------------------------- */

/* Opens the client end; -EAGAIN when every instance is busy (ERROR_PIPE_BUSY). */
static int open_client(wobj *o, const char *path)
{
    int err = 0;
    wchar_t *w = widen(path, &err);
    if (!w) return -err;
    /* SECURITY_IDENTIFICATION: the server may learn who we are, not act as us. */
    HANDLE h =
        CreateFileW(w, GENERIC_READ | GENERIC_WRITE, 0, NULL, OPEN_EXISTING,
                    FILE_FLAG_OVERLAPPED | SECURITY_SQOS_PRESENT | SECURITY_IDENTIFICATION, NULL);
    DWORD e = GetLastError();
    free(w);
    if (h == INVALID_HANDLE_VALUE) return -win_errno(e);
    if (GetFileType(h) != FILE_TYPE_PIPE) {
        CloseHandle(h);
        return -ECONNREFUSED;
    }
    o->h = h;
    return 0;
}

int lsock__plat_connect(const char *path, int abstract, int *fd_out)
{
    *fd_out = -1;
    wobj *o = obj_new(OBJ_PIPE);
    if (!o) return -ENOMEM;
    int rc = open_client(o, path);
    if (rc == 0 || rc == -EAGAIN) {
        *fd_out = o->fd;
        return rc == 0 ? o->fd : rc;
    }
    lsock__plat_close(o->fd);
    return rc;
}

int lsock__plat_reconnect(int fd, const char *path, int abstract)
{
    wobj *o = get(fd);
    if (!o || o->kind != OBJ_PIPE) return -EBADF;
    if (o->h != INVALID_HANDLE_VALUE) return 0;
    return open_client(o, path);
}

static int pipe_exists(const char *path)
{
    int err = 0;
    wchar_t *w = widen(path, &err);
    if (!w) return 0;
    /* Waits at most 1 ms, connects nothing: TRUE (an instance is free) or ERROR_SEM_TIMEOUT
     * (all busy) mean the pipe exists, ERROR_FILE_NOT_FOUND that it does not. */
    BOOL ok = WaitNamedPipeW(w, 1);
    DWORD e = GetLastError();
    free(w);
    return ok || (e != ERROR_FILE_NOT_FOUND && e != ERROR_PATH_NOT_FOUND &&
                  e != ERROR_BAD_PATHNAME && e != ERROR_INVALID_NAME);
}

/* Named pipes vanish with their last handle: a pipe that exists has a live server. */
int lsock__plat_probe(const char *path)
{
    return pipe_exists(path);
}

/* Everything under \\.\pipe\ is a pipe, and none is ever stale: LSOCK_RECLAIM_STALE has
 * nothing to remove, so the reclaim lock below is never needed. */
int lsock__plat_file_info(const char *path, lsock__file_info *out)
{
    memset(out, 0, sizeof *out);
    out->exists = pipe_exists(path);
    out->is_socket = out->exists;
    out->ours = 1;
    return 0;
}

int lsock__plat_name_lock(const char *path, int wait_ms)
{
    (void)path;
    (void)wait_ms;
    return 0;
}

void lsock__plat_name_unlock(int lock)
{
    (void)lock;
}

/* ---- listening -------------------------------------------------------------------------- */

static void *token_info(HANDLE tok, TOKEN_INFORMATION_CLASS cls)
{
    DWORD n = 0;
    GetTokenInformation(tok, cls, NULL, 0, &n);
    void *p = n ? malloc(n) : NULL;
    if (p && !GetTokenInformation(tok, cls, p, n, &n)) {
        free(p);
        p = NULL;
    }
    return p;
}

/* What a client of the pipe needs: read and write, and nothing that changes the pipe. Not
 * FILE_CREATE_PIPE_INSTANCE, which is FILE_APPEND_DATA and so part of FILE_GENERIC_WRITE:
 * whoever has it may create instances of the pipe and be the server its clients reach (a
 * client's GENERIC_WRITE does not need it: the pipe file system leaves it out of the access a
 * client end is checked for). */
#define PIPE_CLIENT_ACCESS ((FILE_GENERIC_READ | FILE_GENERIC_WRITE) & ~FILE_CREATE_PIPE_INSTANCE)

/*
 * The access options as a DACL: LSOCK_USER_ACCESS allows the current user everything,
 * LSOCK_GROUP_ACCESS the user's primary group and LSOCK_OTHER_ACCESS Everyone what a client
 * needs (PIPE_CLIENT_ACCESS). Qt grants all three FILE_ALL_ACCESS, which lets any user the
 * option admits add instances to the server's pipe and take its clients. The owner always
 * keeps the right to create further instances of its own pipe (without it, the server could
 * not replace an instance it handed out), but no more unless USER_ACCESS is given.
 */
static int make_security(wobj *l, unsigned access)
{
    HANDLE tok = NULL;
    if (!OpenProcessToken(GetCurrentProcess(), TOKEN_QUERY, &tok)) return -EACCES;
    TOKEN_USER *user = token_info(tok, TokenUser);
    TOKEN_PRIMARY_GROUP *group = token_info(tok, TokenPrimaryGroup);
    CloseHandle(tok);
    BYTE world[SECURITY_MAX_SID_SIZE];
    DWORD wlen = sizeof world;
    int rc = -ENOMEM;
    if (!user || !group || !CreateWellKnownSid(WinWorldSid, NULL, world, &wlen)) goto out;
    DWORD acl_size = sizeof(ACL) + 4 * (sizeof(ACCESS_ALLOWED_ACE) + SECURITY_MAX_SID_SIZE);
    char *mem = calloc(1, sizeof(SECURITY_DESCRIPTOR) + acl_size);
    if (!mem) goto out;
    SECURITY_DESCRIPTOR *sd = (SECURITY_DESCRIPTOR *)mem;
    ACL *acl = (ACL *)(mem + sizeof(SECURITY_DESCRIPTOR));
    rc = -EACCES;
    BOOL ok = InitializeAcl(acl, acl_size, ACL_REVISION);
    if (ok && (access & LSOCK_USER_ACCESS))
        ok = AddAccessAllowedAce(acl, ACL_REVISION, FILE_ALL_ACCESS, user->User.Sid);
    else if (ok)
        ok = AddAccessAllowedAce(acl, ACL_REVISION,
                                 FILE_CREATE_PIPE_INSTANCE | READ_CONTROL | WRITE_DAC | SYNCHRONIZE,
                                 user->User.Sid);
    if (ok && (access & LSOCK_GROUP_ACCESS))
        ok = AddAccessAllowedAce(acl, ACL_REVISION, PIPE_CLIENT_ACCESS, group->PrimaryGroup);
    if (ok && (access & LSOCK_OTHER_ACCESS))
        ok = AddAccessAllowedAce(acl, ACL_REVISION, PIPE_CLIENT_ACCESS, (PSID)world);
    ok = ok && InitializeSecurityDescriptor(sd, SECURITY_DESCRIPTOR_REVISION) &&
         SetSecurityDescriptorDacl(sd, TRUE, acl, FALSE);
    if (!ok) {
        free(mem);
        goto out;
    }
    /* The SID buffers stay alive with the descriptor: it is absolute and points to them. */
    l->sa_mem = mem;
    l->sa.nLength = sizeof l->sa;
    l->sa.lpSecurityDescriptor = sd;
    l->sa.bInheritHandle = FALSE;
    l->has_sa = 1;
    rc = 0;
    /* Owner and group are left to the defaults (the creator's). */
    free(user);
    free(group);
    return rc;
out:
    free(user);
    free(group);
    return rc;
}

/* SDDL as a self-relative security descriptor in malloc'd memory (*out), or -EINVAL. */
static int parse_sddl(const char *sddl, void **out)
{
    PSECURITY_DESCRIPTOR psd = NULL;
    ULONG len = 0;
    if (!ConvertStringSecurityDescriptorToSecurityDescriptorA(sddl, SDDL_REVISION_1, &psd, &len))
        return -EINVAL;
    void *mem = malloc(len);
    if (mem) memcpy(mem, psd, len);
    LocalFree(psd);
    if (!mem) return -ENOMEM;
    *out = mem;
    return 0;
}

int lsock__plat_check_sddl(const char *sddl)
{
    void *mem = NULL;
    int rc = parse_sddl(sddl, &mem);
    free(mem);
    return rc;
}

/* lsock_server_set_security_descriptor(): the pipes get this descriptor, not the options'. */
static int sddl_security(wobj *l, const char *sddl)
{
    void *mem = NULL;
    int rc = parse_sddl(sddl, &mem);
    if (rc < 0) return rc;
    l->sa_mem = mem;
    l->sa.nLength = sizeof l->sa;
    l->sa.lpSecurityDescriptor = mem;
    l->sa.bInheritHandle = FALSE;
    l->has_sa = 1;
    return 0;
}

/* A new instance of l's pipe, waiting in ConnectNamedPipe, in slot idx. Returns 0 or -errno. */
static int new_instance(wobj *l, int idx, int first)
{
    if (lsock__test_pipe_instance_fail) return -lsock__test_pipe_instance_fail;
    DWORD open =
        PIPE_ACCESS_DUPLEX | FILE_FLAG_OVERLAPPED | (first ? FILE_FLAG_FIRST_PIPE_INSTANCE : 0);
    /* PIPE_REJECT_REMOTE_CLIENTS: local means local, no SMB client reaches the pipe. */
    DWORD mode = PIPE_TYPE_BYTE | PIPE_READMODE_BYTE | PIPE_WAIT | PIPE_REJECT_REMOTE_CLIENTS;
    HANDLE h = CreateNamedPipeW(l->wname, open, mode, PIPE_UNLIMITED_INSTANCES, PIPE_BUF_SIZE,
                                PIPE_BUF_SIZE, 0, l->has_sa ? &l->sa : NULL);
    if (h == INVALID_HANDLE_VALUE) {
        DWORD e = GetLastError();
        if (first && e == ERROR_ACCESS_DENIED) return -EADDRINUSE;
        return -win_errno(e);
    }
    wobj *in = obj_new(OBJ_PIPE);
    if (!in || op_init(&in->conn, in) < 0) {
        if (in) {
            table_remove(in->fd);
            obj_free(in);
        }
        CloseHandle(h);
        return -ENOMEM;
    }
    in->h = h;
    in->server_end = 1;
    in->listener = l;
    l->inst[idx] = in;
    if (l->port) associate(in, l->port);
    if (ConnectNamedPipe(h, op_arm(&in->conn))) {
        in->cdone = 1;
    } else {
        DWORD e = GetLastError();
        if (e == ERROR_IO_PENDING) {
            in->conn.pending = 1;
        } else if (e == ERROR_PIPE_CONNECTED || e == ERROR_NO_DATA) {
            /* A client came between create and connect (or came and went already: it is
             * accepted and reads end of stream). No packet is queued for this: post one. */
            in->cdone = 1;
            post(l, l->fd);
        } else {
            l->inst[idx] = NULL;
            table_remove(in->fd);
            close_pipe(in, 0);
            return -win_errno(e);
        }
    }
    return 0;
}

/* Fills an empty instance slot; a failure is kept in refill_err for accept() to report. */
static void refill(wobj *l, int idx)
{
    int rc = new_instance(l, idx, 0);
    l->refill_err = rc < 0 ? -rc : 0;
}

/* Collects finished ConnectNamedPipe calls and fills empty instance slots. Readable when an
 * instance has a client, and also when a slot stays empty: accept() then reports why, and the
 * server retries on its resource timer (server.c) instead of going deaf. */
static unsigned listener_ready(wobj *l)
{
    unsigned r = 0;
    for (int i = 0; i < l->ninst; i++) {
        wobj *in = l->inst[i];
        if (in && in->conn.pending && op_completed(&in->conn)) {
            DWORD n;
            in->conn.pending = 0;
            if (GetOverlappedResult(in->h, &in->conn.ov, &n, FALSE) ||
                GetLastError() == ERROR_PIPE_CONNECTED || GetLastError() == ERROR_NO_DATA) {
                in->cdone = 1;
            } else {
                l->inst[i] = NULL; /* a failed instance is replaced */
                table_remove(in->fd);
                close_pipe(in, 0);
                in = NULL;
            }
        }
        if (!in) {
            refill(l, i);
            in = l->inst[i];
        }
        if (!in || in->cdone) r |= LSOCK__READABLE;
    }
    return r;
}

/*
 * The first instance of a pipe is made with FILE_FLAG_FIRST_PIPE_INSTANCE, which makes the
 * creation fail when the name exists: of several servers starting together, one listens.
 * Wine (8.0) ignores the flag (two CreateNamedPipeW calls with it both succeed), so lsock also
 * takes turns between its own processes: a named mutex per pipe name, held only while the name
 * is checked (WaitNamedPipeW: no such pipe) and the first instance made. It lives as long as
 * its handles: nothing can go stale, and an abandoned one (its holder died) is taken over.
 */
static HANDLE listen_turn(const char *path)
{
    uint64_t h = 0xcbf29ce484222325ull;
    for (const char *p = path; *p; p++) { /* pipe names are case-insensitive */
        char c = *p >= 'A' && *p <= 'Z' ? (char)(*p - 'A' + 'a') : *p;
        h = (h ^ (unsigned char)c) * 0x100000001b3ull;
    }
    char name[64];
    snprintf(name, sizeof name, "lsock-listen-%016llx", (unsigned long long)h);
    HANDLE m = CreateMutexA(NULL, FALSE, name);
    if (!m) return NULL;
    DWORD w = WaitForSingleObject(m, 5000);
    if (w != WAIT_OBJECT_0 && w != WAIT_ABANDONED) {
        CloseHandle(m);
        return NULL; /* goes on without taking turns: the flag still holds on Windows */
    }
    return m;
}

static void end_turn(HANDLE m)
{
    if (!m) return;
    ReleaseMutex(m);
    CloseHandle(m);
}

int lsock__plat_listen(const char *path, int abstract, unsigned access, const char *sddl,
                       int backlog, uint64_t *dev, uint64_t *ino)
{
    *dev = *ino = 0;
    int err = 0;
    wchar_t *w = widen(path, &err);
    if (!w) return -err;
    wobj *l = obj_new(OBJ_LISTENER);
    if (!l) {
        free(w);
        return -ENOMEM;
    }
    l->wname = w;
    if (backlog < 1) backlog = 1;
    l->inst = calloc((size_t)backlog, sizeof *l->inst);
    l->ninst = backlog;
    int rc = l->inst ? 0 : -ENOMEM;
    if (rc == 0 && sddl)
        rc = sddl_security(l, sddl);
    else if (rc == 0 && access)
        rc = make_security(l, access);
    HANDLE turn = rc == 0 ? listen_turn(path) : NULL;
    if (rc == 0 && pipe_exists(path)) rc = -EADDRINUSE;
    if (rc == 0) rc = new_instance(l, 0, 1);
    end_turn(turn);
    for (int i = 1; rc == 0 && i < backlog; i++)
        rc = new_instance(l, i, 0);
    if (rc < 0) {
        lsock__plat_close(l->fd);
        return rc;
    }
    return l->fd;
}

unsigned lsock__plat_fork_generation(void)
{
    return 0; /* no fork() */
}

unsigned lsock__plat_fork_stamp(void)
{
    return 0;
}

int lsock__plat_forked_since(unsigned stamp)
{
    (void)stamp;
    return 0; /* no fork(): only handed-out and adopted handles are shared */
}

int lsock__plat_accept(int lfd)
{
    wobj *l = get(lfd);
    if (!l || l->kind != OBJ_LISTENER) return -EBADF;
    listener_ready(l);
    for (int i = 0; i < l->ninst; i++) {
        wobj *in = l->inst[i];
        if (!in || !in->cdone) continue;
        in->cdone = 0;
        in->listener = NULL;
        op_free(&in->conn); /* its connect is over: one event less */
        l->inst[i] = NULL;
        refill(l, i);
        return in->fd;
    }
    /* No client, and an instance could not be made: say why, so that the server pauses and
     * tries again later (an empty slot would otherwise wait for a packet that never comes). */
    for (int i = 0; i < l->ninst; i++)
        if (!l->inst[i]) return -(l->refill_err ? l->refill_err : ENOMEM);
    return -EAGAIN;
}

/* ---- readiness for the loop and the blocking waits ------------------------------------- */

static unsigned ready(wobj *o)
{
    switch (o->kind) {
    case OBJ_PIPE:
        return pipe_ready(o);
    case OBJ_LISTENER:
        return listener_ready(o);
    default:
        return o->signalled ? LSOCK__READABLE : 0;
    }
}

int lsock__win_watch(int fd, HANDLE port, unsigned events)
{
    wobj *o = get(fd);
    if (!o) return -EBADF;
    if (events == 0) return 0; /* an association cannot be undone; packets are filtered */
    if (!o->port) {
        if (o->kind == OBJ_PIPE && o->h != INVALID_HANDLE_VALUE) {
            int rc = associate(o, port);
            if (rc < 0) return rc;
        } else if (o->kind == OBJ_LISTENER) {
            for (int i = 0; i < o->ninst; i++)
                if (o->inst[i]) associate(o->inst[i], port);
        }
        o->port = port;
    } else if (o->port != port) {
        return -EINVAL; /* a handle belongs to one completion port for life */
    }
    if (o->kind == OBJ_PIPE && (events & LSOCK__READABLE)) start_read(o);
    /* What completed before the association queued no packet: queue one now. */
    if (ready(o) & events) post(o, o->fd);
    return 0;
}

unsigned lsock__win_ready(ULONG_PTR key, HANDLE port, int *fd_out)
{
    wobj *o = from_key(key);
    if (!o) return 0;
    if (o->kind == OBJ_PIPE && o->listener) o = o->listener; /* an instance: its listener */
    if (o->port != port) return 0;
    *fd_out = o->fd;
    return ready(o);
}

/* The events a blocking wait on o waits on: those of its operations in flight that can make
 * it ready for events (each signalled by its own operation only). Sets *more when there are
 * more than fit. */
static DWORD wait_handles(wobj *o, unsigned events, HANDLE *hs, int *more)
{
    DWORD n = 0;
    *more = 0;
    if (o->kind == OBJ_PIPE) {
        if ((events & LSOCK__READABLE) && o->rd.pending) hs[n++] = o->rd.ev;
        if ((events & LSOCK__WRITABLE) && o->wr.pending) hs[n++] = o->wr.ev;
    } else if (o->kind == OBJ_LISTENER) {
        for (int i = 0; i < o->ninst; i++) {
            wobj *in = o->inst[i];
            if (!in || !in->conn.pending) continue;
            if (n == MAXIMUM_WAIT_OBJECTS) {
                *more = 1;
                break;
            }
            hs[n++] = in->conn.ev;
        }
    } else {
        hs[n++] = o->ev;
    }
    return n;
}

int lsock__plat_wait(int fd, unsigned events, int timeout)
{
    wobj *o = get(fd);
    if (!o) return -EBADF;
    uint64_t deadline = timeout >= 0 ? lsock__now_ms() + (uint64_t)timeout : 0;
    for (;;) {
        if (o->kind == OBJ_WAKEUP) ResetEvent(o->ev); /* a signal after this sets it again */
        if (o->kind == OBJ_PIPE && (events & LSOCK__READABLE)) start_read(o);
        unsigned r = ready(o) & events;
        if (r) return (int)r;
        DWORD ms = INFINITE;
        if (timeout >= 0) {
            uint64_t now = lsock__now_ms();
            if (now >= deadline) return 0;
            ms = (DWORD)(deadline - now);
        }
        HANDLE hs[MAXIMUM_WAIT_OBJECTS];
        int more;
        DWORD n = wait_handles(o, events, hs, &more);
        /* Nothing in flight (a client still waiting for a free instance), or more operations
         * than one wait takes: look again shortly. */
        if ((n == 0 || more) && ms > WAIT_SLICE_MS) ms = WAIT_SLICE_MS;
        if (n == 0) {
            Sleep(ms);
            continue;
        }
        if (WaitForMultipleObjects(n, hs, FALSE, ms) == WAIT_FAILED)
            return -win_errno(GetLastError());
    }
}

/* ---- descriptors, credentials, files ---------------------------------------------------- */

/* The core's descriptors are lsock's own table indices on Windows: an adopted HANDLE gets a
 * slot of its own, and lsock__plat_native gives the HANDLE back. The pipe must have been
 * opened for overlapped I/O (FILE_FLAG_OVERLAPPED), as lsock's own are. Adopting a listening
 * pipe is not supported: a server is a set of instances lsock creates itself. */
int lsock__plat_adopt(intptr_t handle, int listening)
{
    HANDLE h = (HANDLE)handle;
    if (listening) return -ENOTSUP;
    if (h == NULL || h == INVALID_HANDLE_VALUE) return -EBADF;
    if (GetFileType(h) != FILE_TYPE_PIPE) return -ENOTSOCK;
    DWORD flags = 0;
    if (!GetNamedPipeInfo(h, &flags, NULL, NULL, NULL)) return -ENOTSOCK;
    DWORD avail = 0;
    if (!PeekNamedPipe(h, NULL, 0, NULL, &avail, NULL)) {
        /* A server instance nobody connected to (Windows says PIPE_LISTENING, Wine BAD_PIPE)
         * or one whose client came and went: no connection to adopt. A broken pipe is a
         * connection whose peer has closed, adopted as one at its end (as on Unix). */
        DWORD e = GetLastError();
        if (e == ERROR_PIPE_LISTENING || e == ERROR_BAD_PIPE || e == ERROR_PIPE_NOT_CONNECTED)
            return -ENOTCONN;
    }
    wobj *o = obj_new(OBJ_PIPE);
    if (!o) return -ENOMEM;
    o->h = h;
    o->server_end = (flags & PIPE_SERVER_END) != 0;
    return o->fd;
}

intptr_t lsock__plat_native(int fd)
{
    wobj *o = get(fd);
    return o && o->kind == OBJ_PIPE ? (intptr_t)o->h : (intptr_t)fd;
}

int lsock__plat_peer_credentials(int fd, lsock_credentials *out)
{
    wobj *o = get(fd);
    if (!o || o->kind != OBJ_PIPE || o->h == INVALID_HANDLE_VALUE) return -EBADF;
    ULONG pid = 0;
    BOOL ok = o->server_end ? GetNamedPipeClientProcessId(o->h, &pid)
                            : GetNamedPipeServerProcessId(o->h, &pid);
    out->pid = ok ? (int64_t)pid : -1;
    /* Windows identifies users by SID, not by number: no uid or gid to give. */
    out->uid = -1;
    out->gid = -1;
    return 0;
}

int lsock__plat_unlink_if_same(const char *path, uint64_t dev, uint64_t ino)
{
    return 0; /* no file: a pipe goes with its last handle */
}

int lsock__test_foreign_user;

/* The user SID of the process pid (0: this process) as a string into buf. 0, -ERANGE, or
 * -EACCES when the process or its token cannot be opened. */
static int process_sid(DWORD pid, char *buf, size_t size)
{
    HANDLE proc =
        pid ? OpenProcess(PROCESS_QUERY_LIMITED_INFORMATION, FALSE, pid) : GetCurrentProcess();
    if (!proc) return -EACCES;
    HANDLE tok = NULL;
    BOOL ok = OpenProcessToken(proc, TOKEN_QUERY, &tok);
    if (pid) CloseHandle(proc);
    if (!ok) return -EACCES;
    TOKEN_USER *user = token_info(tok, TokenUser);
    CloseHandle(tok);
    char *text = NULL;
    int rc = -EACCES;
    if (user && ConvertSidToStringSidA(user->User.Sid, &text)) {
        rc = strlen(text) < size ? 0 : -ERANGE;
        if (rc == 0) memcpy(buf, text, strlen(text) + 1);
        LocalFree(text);
    }
    free(user);
    return rc;
}

int lsock__win_own_sid(char *buf, size_t size)
{
    return process_sid(0, buf, size);
}

/* The process at the other end of a pipe: the client's for a server end, else the server's. */
static int peer_pid(int fd, DWORD *pid)
{
    wobj *o = get(fd);
    if (!o || o->kind != OBJ_PIPE || o->h == INVALID_HANDLE_VALUE) return -EBADF;
    ULONG p = 0;
    BOOL ok = o->server_end ? GetNamedPipeClientProcessId(o->h, &p)
                            : GetNamedPipeServerProcessId(o->h, &p);
    if (!ok) return -win_errno(GetLastError());
    if (p == 0) return -EACCES; /* no process to ask (and 0 would mean this one below) */
    *pid = p;
    return 0;
}

/* The owner SID of the pipe itself (its creator, the server's user, unless a security
 * descriptor says otherwise): for a server whose process this one may not open. */
static int pipe_owner_sid(HANDLE h, char *buf, size_t size)
{
    PSID owner = NULL;
    PSECURITY_DESCRIPTOR sd = NULL;
    if (GetSecurityInfo(h, SE_KERNEL_OBJECT, OWNER_SECURITY_INFORMATION, &owner, NULL, NULL, NULL,
                        &sd) != ERROR_SUCCESS)
        return -EACCES;
    char *text = NULL;
    int rc = -EACCES;
    if (owner && ConvertSidToStringSidA(owner, &text)) {
        rc = strlen(text) < size ? 0 : -ERANGE;
        if (rc == 0) memcpy(buf, text, strlen(text) + 1);
        LocalFree(text);
    }
    LocalFree(sd);
    return rc;
}

int lsock__plat_peer_sid(int fd, char *buf, size_t size)
{
    DWORD pid = 0;
    int rc = peer_pid(fd, &pid);
    if (rc < 0) return rc;
    rc = process_sid(pid, buf, size);
    wobj *o = get(fd);
    if (rc == -EACCES && !o->server_end) rc = pipe_owner_sid(o->h, buf, size);
    return rc;
}

int lsock__plat_peer_same_user(int fd, char *detail, size_t size)
{
    char mine[256], theirs[256];
    int rc = lsock__plat_peer_sid(fd, theirs, sizeof theirs);
    if (rc == 0) rc = process_sid(0, mine, sizeof mine);
    if (rc < 0) return rc;
    if (strcmp(mine, theirs) == 0 && !lsock__test_foreign_user) return 1;
    snprintf(detail, size, "%s, this process %s", theirs, mine);
    return 0;
}

int lsock__plat_activated_listener(const char *name, const char *path, int *fd)
{
    (void)name;
    (void)path;
    *fd = -1;
    return 0; /* no socket activation on Windows: listen normally */
}

/* LSOCK_ABSTRACT_NAMESPACE is ignored on Windows (as in Qt): the access options are the
 * pipe's DACL, which Windows itself applies to every client. */
int lsock__plat_peer_allowed(int fd, unsigned access)
{
    return 1;
}

int lsock__plat_has_abstract(void)
{
    return 0;
}

int64_t lsock__plat_process_id(void)
{
    return (int64_t)GetCurrentProcessId();
}

void lsock__plat_session_id(char *buf, size_t size)
{
    DWORD sid = 0;
    if (!ProcessIdToSessionId(GetCurrentProcessId(), &sid)) sid = 0;
    snprintf(buf, size, "ws-%lu", (unsigned long)sid);
}

/* Qt: "On Windows, this function does nothing": a pipe goes with its last handle. */
int lsock__plat_remove(const char *path)
{
    return 0;
}

int lsock__plat_local_name(int fd, int peer, char **out, int *abstract)
{
    (void)peer;
    *out = NULL;
    *abstract = 0;
    return -ENOTSUP;
}

/* ---- wakeup ----------------------------------------------------------------------------- */

/* One pseudo-object serves as both ends; signalling posts a packet to the loop's port (set
 * when the loop starts watching it, right after this). */
int lsock__plat_wakeup_open(int *rfd, int *wfd)
{
    wobj *o = obj_new(OBJ_WAKEUP);
    if (!o) return -ENOMEM;
    *rfd = *wfd = o->fd;
    return 0;
}

void lsock__plat_wakeup_signal(int wfd)
{
    wobj *o = get(wfd);
    if (!o) return;
    InterlockedExchange(&o->signalled, 1);
    SetEvent(o->ev);
    post(o, o->fd);
}

void lsock__plat_wakeup_drain(int rfd)
{
    wobj *o = get(rfd);
    if (o) InterlockedExchange(&o->signalled, 0);
}
