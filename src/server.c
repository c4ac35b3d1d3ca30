/*
 * The server: QLocalServer. Listens on a name, accepts connections into a pending queue that
 * the application drains with lsock_server_next_pending_connection(), and pauses accepting
 * while max_pending_connections wait (the kernel's backlog then holds further clients).
 *
 * Stale socket files: a file at the name is probed with a connect; a live server means
 * ADDRESS_IN_USE; a dead one is removed only with LSOCK_RECLAIM_STALE and only if it belongs
 * to the process's own user (else the caller uses lsock_remove_server(), as with Qt).
 * Reclaiming is serialised between processes by a lock on the directory (see clear_name), so
 * that of several servers starting together over one stale file exactly one listens. On close
 * the file is removed only by the process that made it (not by a child that inherited the
 * server across fork()) and only if it is still the one this server made (same device and
 * inode).
 *
 * Access options on an abstract name (no file, no mode): each accepted peer's credentials
 * are checked, and a peer that does not pass is closed before it is queued.
 *
 * Out of descriptors (EMFILE/ENFILE): accepting pauses and a timer retries later, so the
 * loop never spins on a listening socket it cannot accept from.
 */
#include "internal.h"

#include <errno.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define DEFAULT_BACKLOG     50
#define DEFAULT_MAX_PENDING 30
#define RESOURCE_RETRY_MS   100
#define KNOWN_OPTIONS                                                                              \
    (LSOCK_WORLD_ACCESS | LSOCK_ABSTRACT_NAMESPACE | LSOCK_RECLAIM_STALE | LSOCK_SAME_USER_ONLY |  \
     LSOCK_PER_USER | LSOCK_PASS_DESCRIPTORS)
#define RECLAIM_WAIT_MS 2000 /* longest wait for another process's reclaim in the directory */

struct lsock_server {
    lsock_loop *loop;
    void (*cb)(lsock_server *, void *);
    void *ud;
    unsigned options;
    int backlog;
    int max_pending;
    int fd;
    lsock__io io;
    int watching;
    char *name, *full;
    const char *accepted_name; /* the name accepted sockets report: in full, or name */
    int owns_file;
    int64_t owner_pid;    /* the process that listened (and may remove the file) */
    unsigned peer_access; /* access bits checked per peer (abstract names); 0: none */
    uint64_t dev, ino;
    lsock_socket **queue;
    size_t nqueue, capqueue;
    lsock_timer *retry;
    lsock__errinfo err;
    int depth, dead;
    int batch;          /* accepts per readiness event (adaptive, see on_io) */
    uint64_t full_iter; /* loop iteration whose accepts all succeeded up to batch; 0: none */
    char *sddl;         /* lsock_server_set_security_descriptor() (Windows); NULL: none */
    int activated;      /* listening on a descriptor a service manager passed */
};

static const char *const empty = "";

void (*lsock__test_hook_reclaim)(const char *path);

static void destroy(lsock_server *srv)
{
    free(srv->sddl);
    free(srv->queue);
    free(srv->name);
    free(srv->full);
    lsock__err_free(&srv->err);
    free(srv);
}

static void hold(lsock_server *srv)
{
    srv->depth++;
}

static void release(lsock_server *srv)
{
    if (--srv->depth == 0 && srv->dead) destroy(srv);
}

static bool fail(lsock_server *srv, lsock_error code, const char *call, const char *detail)
{
    lsock__err_set(&srv->err, code, call, detail);
    return false;
}

lsock_server *lsock_server_new(lsock_loop *loop)
{
    lsock_server *srv = calloc(1, sizeof *srv);
    if (!srv) return NULL;
    srv->loop = loop;
    srv->fd = -1;
    srv->backlog = DEFAULT_BACKLOG;
    srv->max_pending = DEFAULT_MAX_PENDING;
    if (loop) lsock__loop_ref_objects(loop, 1);
    return srv;
}

void lsock_server_free(lsock_server *srv)
{
    if (!srv || srv->dead) return;
    lsock_server_close(srv);
    if (srv->loop) lsock__loop_ref_objects(srv->loop, -1);
    srv->dead = 1;
    if (srv->depth == 0) destroy(srv);
}

void lsock_server_set_new_connection_callback(lsock_server *srv, void (*cb)(lsock_server *, void *),
                                              void *userdata)
{
    if (!srv) return;
    srv->cb = cb;
    srv->ud = userdata;
}

void *lsock_server_userdata(const lsock_server *srv)
{
    return srv ? srv->ud : NULL;
}

static void set_watching(lsock_server *srv, int on);

/* ---- options ------------------------------------------------------------------------- */

bool lsock_server_set_socket_options(lsock_server *srv, unsigned options)
{
    if (!srv) return false;
    if (options & ~(unsigned)KNOWN_OPTIONS)
        return fail(srv, LSOCK_ERR_INVALID_ARGUMENT, "lsock_server_set_socket_options",
                    "unknown flags");
    srv->options = options;
    return true;
}

unsigned lsock_server_socket_options(const lsock_server *srv)
{
    return srv ? srv->options : 0;
}

bool lsock_server_set_listen_backlog_size(lsock_server *srv, int size)
{
    if (!srv) return false;
    if (size < 1)
        return fail(srv, LSOCK_ERR_INVALID_ARGUMENT, "lsock_server_set_listen_backlog_size",
                    "size must be at least 1");
    srv->backlog = size;
    return true;
}

int lsock_server_listen_backlog_size(const lsock_server *srv)
{
    return srv ? srv->backlog : 0;
}

bool lsock_server_set_max_pending_connections(lsock_server *srv, int n)
{
    if (!srv) return false;
    if (n < 1)
        return fail(srv, LSOCK_ERR_INVALID_ARGUMENT, "lsock_server_set_max_pending_connections",
                    "must be at least 1");
    srv->max_pending = n;
    /* A larger queue resumes accepting at once (unless paused for lack of resources). */
    if (srv->fd >= 0 && srv->nqueue < (size_t)n &&
        !(srv->retry && lsock_timer_is_active(srv->retry)))
        set_watching(srv, 1);
    return true;
}

int lsock_server_max_pending_connections(const lsock_server *srv)
{
    return srv ? srv->max_pending : 0;
}

/* ---- accepting ----------------------------------------------------------------------- */

static void retry_cb(lsock_timer *t, void *ud);

/* A listener the loop cannot watch (the backend refuses it) would never accept: the error
 * says why, and the retry timer tries again, as after EMFILE (pause_accepting). */
static void set_watching(lsock_server *srv, int on)
{
    if (!srv->loop || srv->fd < 0 || srv->watching == on) return;
    if (!on) {
        srv->watching = 0;
        lsock__io_stop(srv->loop, &srv->io, LSOCK__READABLE);
        return;
    }
    int rc = lsock__io_start(srv->loop, &srv->io, LSOCK__READABLE);
    if (rc == 0) {
        srv->watching = 1;
        return;
    }
    char detail[96];
    snprintf(detail, sizeof detail, "cannot watch the listening socket: %s",
             lsock__plat_strerror(-rc));
    lsock__err_set(&srv->err, LSOCK_ERR_SOCKET_RESOURCE, "lsock_server_accept", detail);
    if (!srv->retry) srv->retry = lsock_timer_new(srv->loop, retry_cb, srv);
    if (srv->retry) lsock_timer_start(srv->retry, RESOURCE_RETRY_MS, 0);
}

static void retry_cb(lsock_timer *t, void *ud)
{
    lsock_server *srv = ud;
    if (srv->fd >= 0 && srv->nqueue < (size_t)srv->max_pending) set_watching(srv, 1);
}

/* Out of descriptors or memory (or another accept error that would repeat at once): stop
 * watching and look again a little later, never spinning on a readable listener. */
static void pause_accepting(lsock_server *srv, int err)
{
    int resource = err == EMFILE || err == ENFILE || err == ENOBUFS || err == ENOMEM;
    lsock__err_set(&srv->err, resource ? LSOCK_ERR_SOCKET_RESOURCE : LSOCK_ERR_UNKNOWN,
                   "lsock_server_accept", lsock__plat_strerror(err));
    set_watching(srv, 0);
    if (!srv->loop) return;
    if (!srv->retry) srv->retry = lsock_timer_new(srv->loop, retry_cb, srv);
    if (srv->retry) lsock_timer_start(srv->retry, RESOURCE_RETRY_MS, 0);
}

static int push(lsock_server *srv, lsock_socket *s)
{
    if (srv->nqueue == srv->capqueue) {
        size_t cap = srv->capqueue ? srv->capqueue * 2 : 8;
        lsock_socket **q = realloc(srv->queue, cap * sizeof *q);
        if (!q) return -1;
        srv->queue = q;
        srv->capqueue = cap;
    }
    srv->queue[srv->nqueue++] = s;
    return 0;
}

/* LSOCK_SAME_USER_ONLY: a peer whose user cannot be told is refused too. */
static int same_user(int fd)
{
    char who[128];
    return lsock__plat_peer_same_user(fd, who, sizeof who) == 1;
}

/* Accepts up to limit connections while the queue has room; fires the callback once per
 * connection. A peer that the access bits of an abstract server refuse is closed at once and
 * counts against limit, never queued. Returns the number taken from the backlog, or -1 when
 * accepting failed before any (and is paused); *drained tells whether the backlog was seen
 * empty. */
static int accept_some(lsock_server *srv, int limit, bool *drained)
{
    int n = 0;
    *drained = false;
    while (n < limit && !srv->dead && srv->fd >= 0 && srv->nqueue < (size_t)srv->max_pending) {
        unsigned stamp = lsock__plat_fork_stamp();
        int fd = lsock__plat_accept(srv->fd);
        if (fd == -EAGAIN) {
            *drained = true;
            break;
        }
        if (fd < 0) {
            pause_accepting(srv, -fd);
            return n > 0 ? n : -1;
        }
        if ((srv->peer_access && !lsock__plat_peer_allowed(fd, srv->peer_access)) ||
            ((srv->options & LSOCK_SAME_USER_ONLY) && !same_user(fd))) {
            lsock__plat_close(fd);
            n++;
            continue;
        }
        if (srv->options & LSOCK_PASS_DESCRIPTORS) lsock__plat_pass_descriptors(fd);
        lsock_socket *s =
            lsock__socket_from_accepted(srv->loop, fd, stamp, srv->accepted_name, srv->full);
        if (!s || push(srv, s) < 0) {
            if (s)
                lsock_socket_free(s);
            else
                lsock__plat_close(fd);
            pause_accepting(srv, ENOMEM);
            return n > 0 ? n : -1;
        }
        n++;
        if (srv->cb) srv->cb(srv, srv->ud);
    }
    if (!srv->dead && srv->fd >= 0 && srv->nqueue >= (size_t)srv->max_pending) set_watching(srv, 0);
    return n;
}

/* Adaptive accept. Draining the backlog until EAGAIN costs a failing accept() per wake-up,
 * and a server woken for one connection at a time (the common case) pays it every time. With
 * a level-triggered backend a listener that still has connections is simply reported again
 * at the next iteration, so one accept per event loses nothing; when that happens on two
 * iterations in a row the connections come in a burst, and the batch doubles (up to
 * ACCEPT_BATCH_MAX) until an accept finds the backlog empty. A backend that does not report
 * again (Windows' completion port) gets the whole backlog drained. */
#define ACCEPT_BATCH_MAX 1024

static void on_io(lsock__io *io, unsigned revents)
{
    lsock_server *srv = io->data;
    bool drained;
    hold(srv);
    if (lsock__backend_reports_again()) {
        uint64_t it = lsock__loop_iteration(srv->loop);
        if (srv->full_iter && srv->full_iter + 1 == it)
            srv->batch = srv->batch >= ACCEPT_BATCH_MAX / 2 ? ACCEPT_BATCH_MAX : srv->batch * 2;
        else
            srv->batch = 1;
        int n = accept_some(srv, srv->batch, &drained);
        srv->full_iter = n == srv->batch && !drained ? it : 0;
    } else {
        accept_some(srv, INT_MAX, &drained);
    }
    release(srv);
}

/* ---- listening ----------------------------------------------------------------------- */

/* What is at a name: NAME_FREE (nothing), NAME_STALE (a stale socket file of this user that
 * LSOCK_RECLAIM_STALE lets the server remove), NAME_TAKEN (the server's error says why). */
enum { NAME_TAKEN, NAME_FREE, NAME_STALE };

static int taken(lsock_server *srv, lsock_error code, const char *detail)
{
    fail(srv, code, "lsock_server_listen", detail);
    return NAME_TAKEN;
}

static int examine(lsock_server *srv, const char *path, lsock__file_info *f)
{
    int rc = lsock__plat_file_info(path, f);
    if (rc < 0)
        return taken(srv, lsock__listen_error(rc),
                     rc == -ENAMETOOLONG ? lsock__plat_name_limit_text()
                                         : lsock__plat_strerror(rc));
    if (!f->exists) return NAME_FREE;
    if (!f->is_socket)
        return taken(srv, LSOCK_ERR_ADDRESS_IN_USE, "a file that is not a socket exists");
    int live = lsock__plat_probe(path);
    if (live == 1) return taken(srv, LSOCK_ERR_ADDRESS_IN_USE, "a server is listening");
    if (live < 0 && live != -ECONNREFUSED)
        return taken(srv, LSOCK_ERR_ADDRESS_IN_USE, lsock__plat_strerror(live));
    if (!(srv->options & LSOCK_RECLAIM_STALE))
        return taken(srv, LSOCK_ERR_ADDRESS_IN_USE,
                     "stale socket file; lsock_remove_server() or LSOCK_RECLAIM_STALE");
    if (!f->ours)
        return taken(srv, LSOCK_ERR_ADDRESS_IN_USE,
                     "stale socket file of another user; LSOCK_RECLAIM_STALE removes only the "
                     "user's own");
    return NAME_STALE;
}

/*
 * Clears the name for listening: true when nothing is there, or when a stale socket file was
 * removed (LSOCK_RECLAIM_STALE). Probe, remove and listen must be one step for the processes
 * that reclaim, else two would each remove the other's new socket and both listen, one of
 * them unreachable. So the stale file is looked at again and removed under the directory's
 * reclaim lock, which *lock holds until the caller's listen is done; the socket lsock then
 * links there listens already, so the next process in line finds it live. A process that
 * gets no lock within RECLAIM_WAIT_MS fails ADDRESS_IN_USE.
 */
static bool clear_name(lsock_server *srv, const char *path, int *lock)
{
    static const char call[] = "lsock_server_listen";
    lsock__file_info f;
    int st = examine(srv, path, &f);
    if (st != NAME_STALE) return st == NAME_FREE;
    int rc = lsock__plat_name_lock(path, RECLAIM_WAIT_MS);
    if (rc == -EWOULDBLOCK)
        return fail(srv, LSOCK_ERR_ADDRESS_IN_USE, call,
                    "stale socket file; another process held the directory's reclaim lock "
                    "for 2 s");
    /* A directory the user may write but not read (mode 0300) cannot be opened to lock, and
     * some file systems have no flock: there the reclaim goes on without taking turns, as it
     * did before the lock (the inode check still leaves any other file alone). */
    int unlockable =
        rc == -EACCES || rc == -EPERM || rc == -ENOLCK || rc == -EOPNOTSUPP || rc == -EINVAL;
    if (rc < 0 && !unlockable)
        return fail(srv, lsock__listen_error(rc), call, lsock__plat_strerror(rc));
    if (rc >= 0) *lock = rc;
    st = examine(srv, path, &f);
    if (st != NAME_STALE) return st == NAME_FREE;
    if (lsock__test_hook_reclaim) lsock__test_hook_reclaim(path);
    rc = lsock__plat_unlink_if_same(path, f.dev, f.ino);
    if (rc == 0 || rc == -ENOENT) return true;
    if (rc == -EEXIST)
        return fail(srv, LSOCK_ERR_ADDRESS_IN_USE, call,
                    "the stale socket file was replaced while being reclaimed");
    return fail(srv, lsock__listen_error(rc), call, lsock__plat_strerror(rc));
}

/* Accepted sockets are named as Qt 6 names them (from the listening address): the full name,
 * and its last component as the name (an abstract name whole); a pipe name, which is no path,
 * as given. */
static bool start_listening(lsock_server *srv, int fd, char *name, char *full, int owns,
                            int abstract)
{
    srv->fd = fd;
    srv->name = name;
    srv->full = full;
    srv->accepted_name = abstract ? full : full[0] == '/' ? strrchr(full, '/') + 1 : name;
    srv->owns_file = owns;
    srv->owner_pid = lsock__plat_process_id();
    lsock__err_clear(&srv->err);
    if (srv->loop) {
        lsock__loop_ref_listeners(srv->loop, 1);
        lsock__io_init(&srv->io, fd, on_io, srv);
        set_watching(srv, 1);
    }
    return true;
}

bool lsock_server_listen(lsock_server *srv, const char *name)
{
    static const char call[] = "lsock_server_listen";
    if (!srv || srv->dead) return false;
    if (srv->fd >= 0) return fail(srv, LSOCK_ERR_OPERATION, call, "already listening");
    if (!name || !*name) return fail(srv, LSOCK_ERR_SERVER_NOT_FOUND, call, "empty name");
    int abstract = (srv->options & LSOCK_ABSTRACT_NAMESPACE) && lsock__plat_has_abstract();
    unsigned access = srv->options & LSOCK_WORLD_ACCESS;
    char *full = NULL, why[320];
    int rc = lsock__name_resolve(
        name, srv->options & (abstract ? ~0u : ~(unsigned)LSOCK_ABSTRACT_NAMESPACE), &full, why,
        sizeof why);
    if (rc == -EACCES) return fail(srv, LSOCK_ERR_SOCKET_ACCESS, call, why);
    char *copy = strdup(name);
    if (rc < 0 || !copy) {
        free(full);
        free(copy);
        return fail(srv, LSOCK_ERR_SOCKET_RESOURCE, call, "out of memory");
    }
    const char *refused = lsock__name_check(full);
    if (refused) {
        free(full);
        free(copy);
        return fail(srv, LSOCK_ERR_INVALID_ARGUMENT, call, refused);
    }
    int lock = -1;
    int fd = -EADDRINUSE;
    bool clear = abstract || clear_name(srv, full, &lock);
    if (clear)
        fd = lsock__plat_listen(full, abstract, access, srv->sddl, srv->backlog, &srv->dev,
                                &srv->ino);
    if (lock >= 0) lsock__plat_name_unlock(lock);
    if (fd < 0) {
        free(full);
        free(copy);
        if (!clear) return false;
        return fail(srv, lsock__listen_error(fd), call,
                    fd == -ENAMETOOLONG ? lsock__plat_name_limit_text() : lsock__plat_strerror(fd));
    }
    /* An abstract name has no mode: its access bits are checked per peer (all: nothing to). */
    srv->peer_access = abstract && !(access & LSOCK_OTHER_ACCESS) ? access : 0;
    return start_listening(srv, fd, copy, full, !abstract, abstract);
}

/* The options stay the user's: an adopted socket's abstractness belongs to that socket, and
 * a later listen() follows the options again. No access bits are checked on its peers. */
bool lsock_server_listen_descriptor(lsock_server *srv, intptr_t fd)
{
    static const char call[] = "lsock_server_listen_descriptor";
    if (!srv || srv->dead) return false;
    if (srv->fd >= 0) return fail(srv, LSOCK_ERR_OPERATION, call, "already listening");
    if (fd == -1) return fail(srv, LSOCK_ERR_UNSUPPORTED_OPERATION, call, "invalid descriptor");
    int rc = lsock__plat_adopt(fd, 1);
    if (rc < 0)
        return fail(srv, LSOCK_ERR_UNSUPPORTED_OPERATION, call,
                    rc == -EINVAL ? "not a listening socket" : lsock__plat_strerror(rc));
    char *full = NULL;
    int abstract = 0;
    if (lsock__plat_local_name(rc, 0, &full, &abstract) < 0)
        return fail(srv, LSOCK_ERR_SOCKET_RESOURCE, call, "out of memory");
    const char *base = strrchr(full, '/');
    char *name = strdup(base && !abstract ? base + 1 : full);
    if (!name) {
        free(full);
        return fail(srv, LSOCK_ERR_SOCKET_RESOURCE, call, "out of memory");
    }
    srv->peer_access = 0;
    return start_listening(srv, rc, name, full, 0, abstract);
}

bool lsock_server_listen_activated(lsock_server *srv, const char *name)
{
    static const char call[] = "lsock_server_listen_activated";
    if (!srv || srv->dead) return false;
    if (srv->fd >= 0) return fail(srv, LSOCK_ERR_OPERATION, call, "already listening");
    if (!name || !*name) return fail(srv, LSOCK_ERR_SERVER_NOT_FOUND, call, "empty name");
    int abstract = (srv->options & LSOCK_ABSTRACT_NAMESPACE) && lsock__plat_has_abstract();
    char *full = NULL, why[320];
    int rc = lsock__name_resolve(
        name, srv->options & (abstract ? ~0u : ~(unsigned)LSOCK_ABSTRACT_NAMESPACE), &full, why,
        sizeof why);
    if (rc == -EACCES) return fail(srv, LSOCK_ERR_SOCKET_ACCESS, call, why);
    if (rc < 0) return fail(srv, LSOCK_ERR_SOCKET_RESOURCE, call, "out of memory");
    int fd = -1;
    rc = lsock__plat_activated_listener(name, full, &fd);
    free(full);
    if (rc == 0) return lsock_server_listen(srv, name);
    if (rc < 0)
        return fail(srv, LSOCK_ERR_UNSUPPORTED_OPERATION, call,
                    rc == -EINVAL ? "the passed descriptor is not a listening AF_UNIX stream socket"
                                  : lsock__plat_strerror(rc));
    char *local = NULL;
    if (lsock__plat_local_name(fd, 0, &local, &abstract) < 0) {
        lsock__plat_close(fd);
        return fail(srv, LSOCK_ERR_SOCKET_RESOURCE, call, "out of memory");
    }
    char *copy = strdup(name); /* the name asked for; the full name is the socket's address */
    if (!copy) {
        free(local);
        lsock__plat_close(fd);
        return fail(srv, LSOCK_ERR_SOCKET_RESOURCE, call, "out of memory");
    }
    srv->peer_access = 0;
    if (!start_listening(srv, fd, copy, local, 0, abstract)) return false;
    srv->activated = 1;
    return true;
}

bool lsock_server_is_activated(const lsock_server *srv)
{
    return srv && srv->fd >= 0 && srv->activated;
}

bool lsock_server_set_security_descriptor(lsock_server *srv, const char *sddl)
{
    static const char call[] = "lsock_server_set_security_descriptor";
    if (!srv) return false;
    if (!sddl) {
        free(srv->sddl);
        srv->sddl = NULL;
        return true;
    }
    int rc = lsock__plat_check_sddl(sddl);
    if (rc == -ENOTSUP)
        return fail(srv, LSOCK_ERR_UNSUPPORTED_OPERATION, call,
                    "socket files have modes (the ACCESS options), not security descriptors");
    if (rc < 0)
        return fail(srv, LSOCK_ERR_INVALID_ARGUMENT, call, "SDDL that Windows cannot parse");
    char *copy = strdup(sddl);
    if (!copy) return fail(srv, LSOCK_ERR_SOCKET_RESOURCE, call, "out of memory");
    free(srv->sddl);
    srv->sddl = copy;
    return true;
}

bool lsock_server_is_listening(const lsock_server *srv)
{
    return srv && srv->fd >= 0;
}

void lsock_server_close(lsock_server *srv)
{
    if (!srv) return;
    for (size_t i = 0; i < srv->nqueue; i++)
        lsock_socket_free(srv->queue[i]);
    srv->nqueue = 0;
    if (srv->retry) {
        lsock_timer_free(srv->retry);
        srv->retry = NULL;
    }
    if (srv->fd < 0) return;
    /* A child of fork() closes its copy and leaves the file alone: the parent still listens
     * there. The loop keeps the parent's kernel registrations as they are on a loop the child
     * inherited (see the fork policy in lsock.h), and removes the child's own after
     * lsock_loop_fork(). */
    int creator = srv->owner_pid == lsock__plat_process_id();
    set_watching(srv, 0);
    if (srv->loop) lsock__loop_ref_listeners(srv->loop, -1);
    lsock__plat_close(srv->fd);
    srv->fd = -1;
    if (srv->owns_file && creator) lsock__plat_unlink_if_same(srv->full, srv->dev, srv->ino);
    srv->owns_file = 0;
    srv->peer_access = 0;
    srv->activated = 0;
    free(srv->name);
    free(srv->full);
    srv->name = srv->full = NULL;
    srv->accepted_name = NULL;
}

/* ---- pending connections ------------------------------------------------------------- */

bool lsock_server_has_pending_connections(const lsock_server *srv)
{
    return srv && srv->nqueue > 0;
}

lsock_socket *lsock_server_next_pending_connection(lsock_server *srv)
{
    if (!srv || srv->nqueue == 0) return NULL;
    lsock_socket *s = srv->queue[0];
    srv->nqueue--;
    memmove(srv->queue, srv->queue + 1, srv->nqueue * sizeof *srv->queue);
    lsock__socket_activate(s);
    if (srv->fd >= 0 && srv->nqueue < (size_t)srv->max_pending &&
        !(srv->retry && lsock_timer_is_active(srv->retry)))
        set_watching(srv, 1);
    return s;
}

bool lsock_server_wait_for_new_connection(lsock_server *srv, int msecs, bool *timed_out)
{
    static const char call[] = "lsock_server_wait_for_new_connection";
    if (timed_out) *timed_out = false;
    if (!srv || srv->dead) return false;
    if (srv->nqueue > 0) return true;
    if (srv->fd < 0) return fail(srv, LSOCK_ERR_OPERATION, call, "not listening");
    hold(srv);
    uint64_t deadline = lsock__now_ms() + (uint64_t)(msecs < 0 ? 0 : msecs);
    bool ok = false;
    for (;;) {
        int left = -1;
        if (msecs >= 0) {
            uint64_t now = lsock__now_ms();
            left = now >= deadline ? 0 : (int)(deadline - now);
        }
        int rc = lsock__plat_wait(srv->fd, LSOCK__READABLE, left);
        if (rc == 0) {
            if (timed_out) *timed_out = true;
            fail(srv, LSOCK_ERR_SOCKET_TIMEOUT, call, NULL);
            break;
        }
        if (rc < 0) {
            fail(srv, LSOCK_ERR_UNKNOWN, call, lsock__plat_strerror(rc));
            break;
        }
        bool drained;
        int got = accept_some(srv, INT_MAX, &drained);
        if (srv->dead || srv->fd < 0) break;
        if (srv->nqueue > 0) {
            ok = true;
            break;
        }
        if (got < 0) {
            /* Out of descriptors: do not spin on a readable listener we cannot accept. */
            int pause = left < 0 || left > RESOURCE_RETRY_MS ? RESOURCE_RETRY_MS : left;
            lsock__plat_sleep_ms(pause);
            if (msecs >= 0 && lsock__now_ms() >= deadline) {
                if (timed_out) *timed_out = true;
                break; /* the SOCKET_RESOURCE error says why nothing came */
            }
        }
    }
    release(srv);
    return ok;
}

/* ---- names and errors ---------------------------------------------------------------- */

const char *lsock_server_name(const lsock_server *srv)
{
    return srv && srv->name ? srv->name : empty;
}

const char *lsock_server_full_server_name(const lsock_server *srv)
{
    return srv && srv->full ? srv->full : empty;
}

intptr_t lsock_server_descriptor(const lsock_server *srv)
{
    return srv ? srv->fd : -1;
}

lsock_error lsock_server_error(const lsock_server *srv)
{
    return srv ? srv->err.code : LSOCK_ERR_NONE;
}

const char *lsock_server_error_string(const lsock_server *srv)
{
    return srv ? lsock__err_text(&srv->err) : empty;
}

bool lsock_remove_server(const char *name)
{
    if (!name || !*name) return false;
    char *path = NULL, why[320];
    if (lsock__name_resolve(name, 0, &path, why, sizeof why) < 0) return false;
    int rc = lsock__plat_remove(path);
    free(path);
    return rc == 0;
}
