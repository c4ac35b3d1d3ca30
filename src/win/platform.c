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
 * Completion is observed two ways, both always armed: every OVERLAPPED of an object signals
 * the object's one manual-reset event (the blocking waits, lsock__plat_wait, wait on it with
 * WaitForSingleObject), and a handle watched by a loop is associated with the loop's I/O
 * completion port (iocp.c). A completion packet is only a hint: the receiver re-checks the
 * OVERLAPPED (HasOverlappedIoCompleted) and never trusts the packet's pointer, so a packet
 * whose operation a blocking wait already consumed, or whose object is gone, is harmless.
 *
 * Errors travel as -errno values (the constants of the C runtime), mapped from Win32 codes
 * by win_errno(), so the core's error mapping is the same as on Unix.
 */
#include "win.h"

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

enum { OBJ_PIPE = 1, OBJ_LISTENER = 2, OBJ_WAKEUP = 3 };

typedef struct wobj wobj;
struct wobj {
    int kind;
    int fd;
    HANDLE ev;            /* manual-reset; signalled by every completion of this object */
    HANDLE volatile port; /* completion port the handles are associated with, or NULL */

    /* pipe */
    HANDLE h; /* INVALID_HANDLE_VALUE while a client waits for a free instance */
    int server_end;
    wobj *listener; /* set while this is an instance waiting for a client */
    OVERLAPPED cov; /* ConnectNamedPipe of a waiting instance (event: the listener's) */
    int cpending, cdone;
    OVERLAPPED rov;
    char *rbuf;
    DWORD rlen, rpos;
    int rpending, reof, rerr;
    OVERLAPPED wov;
    char *wbuf;
    size_t wcap;
    int wpending, werr;
    HANDLE linger_wait;

    /* listener */
    wchar_t *wname;
    wobj **inst;
    int ninst;
    SECURITY_ATTRIBUTES sa;
    int has_sa;
    void *sa_mem;

    /* wakeup */
    volatile LONG signalled;
};

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

uint64_t lsock__now_ms(void)
{
    static LARGE_INTEGER freq; /* benign race: every thread computes the same value */
    LARGE_INTEGER now;
    if (freq.QuadPart == 0) QueryPerformanceFrequency(&freq);
    QueryPerformanceCounter(&now);
    return (uint64_t)(now.QuadPart / freq.QuadPart) * 1000u +
           (uint64_t)(now.QuadPart % freq.QuadPart) * 1000u / (uint64_t)freq.QuadPart;
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

/* ---- objects ---------------------------------------------------------------------------- */

static wobj *obj_new(int kind)
{
    wobj *o = calloc(1, sizeof *o);
    if (!o) return NULL;
    o->kind = kind;
    o->h = INVALID_HANDLE_VALUE;
    o->ev = CreateEventW(NULL, TRUE, FALSE, NULL);
    if (!o->ev || table_add(o) < 0) {
        if (o->ev) CloseHandle(o->ev);
        free(o);
        return NULL;
    }
    return o;
}

static void obj_free(wobj *o)
{
    free(o->rbuf);
    free(o->wbuf);
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
    if (!o->rpending || !HasOverlappedIoCompleted(&o->rov)) return;
    DWORD n = 0;
    o->rpending = 0;
    o->rlen = o->rpos = 0;
    if (GetOverlappedResult(o->h, &o->rov, &n, FALSE) || GetLastError() == ERROR_MORE_DATA) {
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
    if (o->h == INVALID_HANDLE_VALUE || o->listener || o->rpending || o->rpos < o->rlen ||
        o->reof || o->rerr)
        return;
    if (!o->rbuf && !(o->rbuf = malloc(RBUF_SIZE))) {
        o->rerr = ENOMEM;
        return;
    }
    o->rlen = o->rpos = 0;
    memset(&o->rov, 0, sizeof o->rov);
    o->rov.hEvent = o->ev;
    if (!ReadFile(o->h, o->rbuf, RBUF_SIZE, NULL, &o->rov)) {
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
    o->rpending = 1;
    harvest_read(o); /* completed at once: the data is there now */
}

static void harvest_write(wobj *o)
{
    if (!o->wpending || !HasOverlappedIoCompleted(&o->wov)) return;
    DWORD n = 0;
    o->wpending = 0;
    if (!GetOverlappedResult(o->h, &o->wov, &n, FALSE)) {
        DWORD e = GetLastError();
        o->werr = is_eof(e) ? EPIPE : win_errno(e);
    }
}

static unsigned pipe_ready(wobj *o)
{
    if (o->h == INVALID_HANDLE_VALUE || o->listener) return 0;
    harvest_read(o);
    harvest_write(o);
    unsigned r = 0;
    if (o->rpos < o->rlen || o->reof || o->rerr) r |= LSOCK__READABLE;
    if (!o->wpending) r |= LSOCK__WRITABLE;
    return r;
}

/* Loop-less sockets keep polling their pipe's read-ahead on Windows: there is no blocking
 * mode to switch to, so lsock__plat_set_blocking declines and the core never blocks in a
 * read. */
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

int64_t lsock__plat_read_blocking(int fd, void *buf, size_t n)
{
    return lsock__plat_read(fd, buf, n);
}

int64_t lsock__plat_read(int fd, void *buf, size_t n)
{
    wobj *o = get(fd);
    if (!o || o->kind != OBJ_PIPE || o->h == INVALID_HANDLE_VALUE) return -EBADF;
    harvest_read(o);
    if (o->rpos >= o->rlen && !o->reof && !o->rerr) start_read(o);
    if (o->rpos < o->rlen) {
        size_t m = o->rlen - o->rpos;
        if (m > n) m = n;
        memcpy(buf, o->rbuf + o->rpos, m);
        o->rpos += (DWORD)m;
        if (o->rpos >= o->rlen) start_read(o); /* read ahead */
        return (int64_t)m;
    }
    if (o->reof) return 0;
    if (o->rerr) return -o->rerr;
    return -EAGAIN;
}

int64_t lsock__plat_write(int fd, const void *buf, size_t n)
{
    wobj *o = get(fd);
    if (!o || o->kind != OBJ_PIPE || o->h == INVALID_HANDLE_VALUE) return -EBADF;
    harvest_write(o);
    if (o->werr) return -o->werr;
    if (o->wpending) return -EAGAIN;
    if (n == 0) return 0;
    size_t m = n > WCHUNK_MAX ? WCHUNK_MAX : n;
    if (o->wcap < m) {
        size_t cap = m < 65536 ? 65536 : m;
        char *b = realloc(o->wbuf, cap);
        if (!b) return -ENOMEM;
        o->wbuf = b;
        o->wcap = cap;
    }
    memcpy(o->wbuf, buf, m);
    memset(&o->wov, 0, sizeof o->wov);
    o->wov.hEvent = o->ev;
    if (!WriteFile(o->h, o->wbuf, (DWORD)m, NULL, &o->wov)) {
        DWORD e = GetLastError();
        if (e != ERROR_IO_PENDING) {
            o->werr = is_eof(e) ? EPIPE : win_errno(e);
            return -o->werr;
        }
    }
    o->wpending = 1;
    harvest_write(o);
    return (int64_t)m;
}

/* ---- closing ---------------------------------------------------------------------------- */

/* A write still in flight at close: its bytes were counted as written, so they must reach the
 * peer as a Unix socket's buffered bytes do. The handle stays open until the write
 * completes, which a thread-pool wait on the object's event observes. */
static VOID CALLBACK linger_done(PVOID arg, BOOLEAN timed_out)
{
    wobj *o = arg;
    while (!InterlockedCompareExchangePointer(&o->linger_wait, NULL, NULL))
        Sleep(0); /* RegisterWaitForSingleObject has not stored the wait handle yet */
    DWORD n;
    GetOverlappedResult(o->h, &o->wov, &n, FALSE);
    CloseHandle(o->h);
    UnregisterWaitEx(o->linger_wait, NULL);
    obj_free(o);
}

static void close_pipe(wobj *o)
{
    if (o->h != INVALID_HANDLE_VALUE) {
        DWORD n;
        if (o->cpending) {
            CancelIoEx(o->h, &o->cov);
            GetOverlappedResult(o->h, &o->cov, &n, TRUE);
        }
        if (o->rpending) {
            CancelIoEx(o->h, &o->rov);
            GetOverlappedResult(o->h, &o->rov, &n, TRUE);
            o->rpending = 0;
        }
        if (o->wpending) {
            ResetEvent(o->ev);
            if (!HasOverlappedIoCompleted(&o->wov)) {
                HANDLE w = NULL;
                if (RegisterWaitForSingleObject(&w, o->ev, linger_done, o, INFINITE,
                                                WT_EXECUTEONLYONCE)) {
                    InterlockedExchangePointer(&o->linger_wait, w);
                    return;
                }
                CancelIoEx(o->h, &o->wov);
                GetOverlappedResult(o->h, &o->wov, &n, TRUE);
            }
        }
        CloseHandle(o->h);
    }
    obj_free(o);
}

static void close_listener(wobj *l)
{
    for (int i = 0; i < l->ninst; i++) {
        wobj *in = l->inst[i];
        if (!in) continue;
        table_remove(in->fd);
        close_pipe(in);
    }
    obj_free(l);
}

void lsock__plat_close(int fd)
{
    wobj *o = get(fd);
    if (!o) return;
    table_remove(fd);
    if (o->kind == OBJ_PIPE)
        close_pipe(o);
    else if (o->kind == OBJ_LISTENER)
        close_listener(o);
    else
        obj_free(o);
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

/*
 * The access options as a DACL, as Qt does it: LSOCK_USER_ACCESS allows the current user,
 * LSOCK_GROUP_ACCESS the user's primary group, LSOCK_OTHER_ACCESS Everyone. The owner always
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
        ok = AddAccessAllowedAce(acl, ACL_REVISION, FILE_ALL_ACCESS, group->PrimaryGroup);
    if (ok && (access & LSOCK_OTHER_ACCESS))
        ok = AddAccessAllowedAce(acl, ACL_REVISION, FILE_ALL_ACCESS, (PSID)world);
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

/* A new instance of l's pipe, waiting in ConnectNamedPipe. Returns 0 or -errno. */
static int new_instance(wobj *l, int idx, int first)
{
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
    if (!in) {
        CloseHandle(h);
        return -ENOMEM;
    }
    in->h = h;
    in->server_end = 1;
    in->listener = l;
    l->inst[idx] = in;
    if (l->port) associate(in, l->port);
    memset(&in->cov, 0, sizeof in->cov);
    in->cov.hEvent = l->ev;
    if (ConnectNamedPipe(h, &in->cov)) {
        in->cdone = 1;
    } else {
        DWORD e = GetLastError();
        if (e == ERROR_IO_PENDING) {
            in->cpending = 1;
        } else if (e == ERROR_PIPE_CONNECTED || e == ERROR_NO_DATA) {
            /* A client came between create and connect (or came and went already: it is
             * accepted and reads end of stream). No packet is queued for this: post one. */
            in->cdone = 1;
            SetEvent(l->ev);
            post(l, l->fd);
        } else {
            l->inst[idx] = NULL;
            table_remove(in->fd);
            CloseHandle(in->h);
            in->h = INVALID_HANDLE_VALUE;
            obj_free(in);
            return -win_errno(e);
        }
    }
    return 0;
}

/* Collects finished ConnectNamedPipe calls; refills empty instance slots. */
static unsigned listener_ready(wobj *l)
{
    unsigned r = 0;
    for (int i = 0; i < l->ninst; i++) {
        wobj *in = l->inst[i];
        if (!in) {
            new_instance(l, i, 0);
            continue;
        }
        if (in->cpending && HasOverlappedIoCompleted(&in->cov)) {
            DWORD n;
            in->cpending = 0;
            if (GetOverlappedResult(in->h, &in->cov, &n, FALSE) ||
                GetLastError() == ERROR_PIPE_CONNECTED || GetLastError() == ERROR_NO_DATA) {
                in->cdone = 1;
            } else {
                l->inst[i] = NULL; /* a failed instance is replaced */
                table_remove(in->fd);
                close_pipe(in);
                new_instance(l, i, 0);
                in = l->inst[i];
            }
        }
        if (in && in->cdone) r |= LSOCK__READABLE;
    }
    return r;
}

int lsock__plat_listen(const char *path, int abstract, unsigned access, int backlog, uint64_t *dev,
                       uint64_t *ino)
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
    if (rc == 0 && access) rc = make_security(l, access);
    for (int i = 0; rc == 0 && i < backlog; i++)
        rc = new_instance(l, i, i == 0);
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
        l->inst[i] = NULL;
        new_instance(l, i, 0); /* on failure, listener_ready() tries again later */
        return in->fd;
    }
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

int lsock__plat_wait(int fd, unsigned events, int timeout)
{
    wobj *o = get(fd);
    if (!o) return -EBADF;
    uint64_t deadline = timeout >= 0 ? lsock__now_ms() + (uint64_t)timeout : 0;
    for (;;) {
        /* Reset first: a completion after this point signals the event again. */
        ResetEvent(o->ev);
        if (o->kind == OBJ_PIPE && (events & LSOCK__READABLE)) start_read(o);
        unsigned r = ready(o) & events;
        if (r) return (int)r;
        DWORD ms = INFINITE;
        if (timeout >= 0) {
            uint64_t now = lsock__now_ms();
            if (now >= deadline) return 0;
            ms = (DWORD)(deadline - now);
        }
        DWORD w = WaitForSingleObject(o->ev, ms);
        if (w == WAIT_FAILED) return -win_errno(GetLastError());
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
    if (!PeekNamedPipe(h, NULL, 0, NULL, &avail, NULL) && GetLastError() == ERROR_PIPE_LISTENING)
        return -ENOTCONN; /* a server instance nobody connected to */
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

/* LSOCK_ABSTRACT_NAMESPACE is ignored on Windows (as in Qt): the access options are the
 * pipe's DACL, which Windows itself applies to every client. */
int lsock__plat_peer_allowed(int fd, unsigned access)
{
    return 1;
}

int64_t lsock__plat_process_id(void)
{
    return (int64_t)GetCurrentProcessId();
}

/* Qt: "On Windows, this function does nothing": a pipe goes with its last handle. */
int lsock__plat_remove(const char *path)
{
    return 0;
}

int lsock__plat_local_name(int fd, char **out, int *abstract)
{
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
