/*
 * The event loop: descriptor watchers dispatched by a backend chosen at build time
 * (src/unix/epoll.c or src/unix/poll.c), timers in a binary min-heap, a queue of deferred
 * work, and a wakeup channel that other threads may signal.
 *
 * Re-entrancy: a callback may stop or free the very watcher, timer or object being
 * dispatched. Watchers are looked up by descriptor for every reported event, so a watcher
 * stopped earlier in the same iteration is skipped; timers are taken off the heap before
 * their callback runs and freed afterwards if the callback asked for it.
 */
#include "internal.h"

#include <errno.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#define SCRATCH_SIZE 65536

struct lsock_timer {
    lsock_loop *loop;
    void (*cb)(lsock_timer *, void *);
    void *userdata;
    uint64_t due;
    uint64_t repeat;
    uint64_t seq;
    size_t heap_index; /* SIZE_MAX when not started */
    int in_cb;
    int dead;
};

struct lsock_loop {
    lsock__backend *backend;
    lsock__io **watchers; /* indexed by descriptor */
    int nwatchers;
    int active_ios; /* watchers with events, the wakeup one excluded */
    lsock_timer **heap;
    size_t nheap, capheap;
    uint64_t timer_seq;
    lsock__pending pending; /* sentinel of the deferred work queue */
    int objects;
    int listeners;            /* listening servers: work even while paused (no watcher) */
    int running;              /* lsock_loop_run depth: the loop cannot be freed inside it */
    int stop_flag;            /* lsock_loop_stop(): cleared when the outermost run returns */
    unsigned fork_gen;        /* lsock__plat_fork_generation() of the process the backend is for */
    unsigned backend_epoch;   /* changes with each lsock_loop_fork() that replaces the backend */
    unsigned dispatch_epoch;  /* backend_epoch of the backend whose events are being reported */
    lsock__backend **retired; /* replaced by lsock_loop_fork() while a run was dispatching */
    int nretired;
    uint64_t iteration; /* polls so far: tells a server whether its listener fired twice in a row */
    int busy_poll_us;   /* lsock_loop_set_busy_poll(): 0 off */
    int wake_rfd, wake_wfd;
    lsock__io wake_io;
    atomic_int wake_pending;
    char *scratch;
};

/* ---- heap of timers ------------------------------------------------------------------ */

static int timer_less(const lsock_timer *a, const lsock_timer *b)
{
    return a->due < b->due || (a->due == b->due && a->seq < b->seq);
}

static void heap_swap(lsock_loop *loop, size_t i, size_t j)
{
    lsock_timer *t = loop->heap[i];
    loop->heap[i] = loop->heap[j];
    loop->heap[j] = t;
    loop->heap[i]->heap_index = i;
    loop->heap[j]->heap_index = j;
}

static void heap_up(lsock_loop *loop, size_t i)
{
    while (i > 0) {
        size_t parent = (i - 1) / 2;
        if (!timer_less(loop->heap[i], loop->heap[parent])) break;
        heap_swap(loop, i, parent);
        i = parent;
    }
}

static void heap_down(lsock_loop *loop, size_t i)
{
    for (;;) {
        size_t l = 2 * i + 1, r = l + 1, m = i;
        if (l < loop->nheap && timer_less(loop->heap[l], loop->heap[m])) m = l;
        if (r < loop->nheap && timer_less(loop->heap[r], loop->heap[m])) m = r;
        if (m == i) break;
        heap_swap(loop, i, m);
        i = m;
    }
}

static int heap_insert(lsock_loop *loop, lsock_timer *t)
{
    if (loop->nheap == loop->capheap) {
        size_t cap = loop->capheap ? loop->capheap * 2 : 16;
        lsock_timer **h = realloc(loop->heap, cap * sizeof *h);
        if (!h) return -1;
        loop->heap = h;
        loop->capheap = cap;
    }
    t->heap_index = loop->nheap;
    loop->heap[loop->nheap++] = t;
    heap_up(loop, t->heap_index);
    return 0;
}

static void heap_remove(lsock_loop *loop, lsock_timer *t)
{
    size_t i = t->heap_index;
    if (i == SIZE_MAX) return;
    loop->nheap--;
    if (i != loop->nheap) {
        heap_swap(loop, i, loop->nheap);
        heap_down(loop, i);
        heap_up(loop, i);
    }
    t->heap_index = SIZE_MAX;
}

/* ---- watchers ------------------------------------------------------------------------ */

void lsock__io_init(lsock__io *io, int fd, lsock__io_cb cb, void *data)
{
    io->fd = fd;
    io->events = 0;
    io->installed = 0;
    io->cb = cb;
    io->data = data;
}

static int grow_watchers(lsock_loop *loop, int fd)
{
    if (fd < loop->nwatchers) return 0;
    int n = loop->nwatchers ? loop->nwatchers : 64;
    while (n <= fd)
        n *= 2;
    lsock__io **w = realloc(loop->watchers, (size_t)n * sizeof *w);
    if (!w) return -1;
    memset(w + loop->nwatchers, 0, (size_t)(n - loop->nwatchers) * sizeof *w);
    loop->watchers = w;
    loop->nwatchers = n;
    return 0;
}

/* A loop inherited across fork() whose child has not called lsock_loop_fork(): its backend
 * (an epoll instance is one open file, shared with the parent) is the parent's to change. */
static int inherited(const lsock_loop *loop)
{
    return loop->fork_gen != lsock__plat_fork_generation();
}

int lsock__test_io_start_fail;

int lsock__io_start(lsock_loop *loop, lsock__io *io, unsigned events)
{
    unsigned want = io->events | events;
    if (want == io->installed) {
        io->events = want;
        return 0;
    }
    if (inherited(loop)) return -EPERM; /* see the fork policy in lsock.h */
    if (lsock__test_io_start_fail) {
        int err = lsock__test_io_start_fail;
        lsock__test_io_start_fail = 0;
        return -err;
    }
    if (grow_watchers(loop, io->fd) < 0) return -ENOMEM;
    int rc = lsock__backend_set(loop->backend, io->fd, io->installed, want);
    if (rc < 0) return rc;
    if (io->installed == 0 && io != &loop->wake_io) loop->active_ios++;
    io->events = io->installed = want;
    loop->watchers[io->fd] = io;
    return 0;
}

static void io_change(lsock_loop *loop, lsock__io *io, unsigned events, int closing, int shared)
{
    unsigned want = io->events & ~events;
    io->events = want;
    if (want == io->installed) return;
    if (inherited(loop))
        ; /* the child lets go of its copy only: the parent's registrations stay as they are */
    else if (closing)
        lsock__backend_forget(loop->backend, io->fd, io->installed, shared);
    else
        lsock__backend_set(loop->backend, io->fd, io->installed, want);
    if (want == 0) {
        if (io != &loop->wake_io) loop->active_ios--;
        if (io->fd < loop->nwatchers && loop->watchers[io->fd] == io) loop->watchers[io->fd] = NULL;
    }
    io->installed = want;
}

void lsock__io_stop(lsock_loop *loop, lsock__io *io, unsigned events)
{
    io_change(loop, io, events, 0, 0);
}

void lsock__io_close(lsock_loop *loop, lsock__io *io, int shared)
{
    io_change(loop, io, LSOCK__READABLE | LSOCK__WRITABLE, 1, shared);
}

/* ---- deferred work ------------------------------------------------------------------- */

static void pending_unlink(lsock__pending *p)
{
    p->prev->next = p->next;
    p->next->prev = p->prev;
    p->next = p->prev = NULL;
}

static void pending_append(lsock__pending *head, lsock__pending *p)
{
    p->prev = head->prev;
    p->next = head;
    head->prev->next = p;
    head->prev = p;
}

static int pending_empty(const lsock__pending *head)
{
    return head->next == head;
}

void lsock__pending_queue(lsock_loop *loop, lsock__pending *p)
{
    if (p->queued) return;
    p->queued = 1;
    pending_append(&loop->pending, p);
}

void lsock__pending_cancel(lsock_loop *loop, lsock__pending *p)
{
    (void)loop;
    if (!p->queued) return;
    pending_unlink(p); /* from the loop's queue or from a run's snapshot alike */
    p->queued = 0;
}

/* Runs the work queued so far, from a snapshot of the queue (as libuv's uv__run_pending):
 * work queued by these callbacks waits for the next round, and a nested lsock_loop_run()
 * inside one of them runs only what was queued after the snapshot, never leaving an item of
 * this snapshot behind. */
static int run_pending(lsock_loop *loop)
{
    if (pending_empty(&loop->pending)) return 0;
    lsock__pending snap;
    snap.next = loop->pending.next;
    snap.prev = loop->pending.prev;
    snap.next->prev = &snap;
    snap.prev->next = &snap;
    loop->pending.next = loop->pending.prev = &loop->pending;
    int ran = 0;
    while (!pending_empty(&snap)) {
        if (inherited(loop)) {
            /* A callback forked and this is the child: the rest stays queued, in order, for
             * the child's lsock_loop_fork() and next run. */
            lsock__pending *first = snap.next, *last = snap.prev, *head = &loop->pending;
            last->next = head->next;
            head->next->prev = last;
            head->next = first;
            first->prev = head;
            break;
        }
        lsock__pending *p = snap.next;
        pending_unlink(p);
        p->queued = 0;
        ran++;
        p->cb(p); /* may free p, cancel or queue others */
    }
    return ran;
}

/* ---- loop ---------------------------------------------------------------------------- */

static void wake_cb(lsock__io *io, unsigned revents)
{
    lsock_loop *loop = io->data;
    lsock__plat_wakeup_drain(loop->wake_rfd);
    atomic_store(&loop->wake_pending, 0);
}

lsock_loop *lsock_loop_new(void)
{
    lsock_loop *loop = calloc(1, sizeof *loop);
    if (!loop) return NULL;
    loop->pending.next = loop->pending.prev = &loop->pending;
    loop->fork_gen = lsock__plat_fork_generation();
    loop->backend = lsock__backend_new();
    if (!loop->backend) {
        free(loop);
        return NULL;
    }
    if (lsock__plat_wakeup_open(&loop->wake_rfd, &loop->wake_wfd) < 0) {
        lsock__backend_free(loop->backend);
        free(loop);
        return NULL;
    }
    atomic_init(&loop->wake_pending, 0);
    lsock__io_init(&loop->wake_io, loop->wake_rfd, wake_cb, loop);
    if (lsock__io_start(loop, &loop->wake_io, LSOCK__READABLE) < 0) {
        lsock__plat_close(loop->wake_rfd);
        if (loop->wake_wfd != loop->wake_rfd) lsock__plat_close(loop->wake_wfd);
        lsock__backend_free(loop->backend);
        free(loop->watchers);
        free(loop);
        return NULL;
    }
    return loop;
}

static void free_retired(lsock_loop *loop);

bool lsock_loop_free(lsock_loop *loop)
{
    if (!loop) return true;
    if (loop->objects > 0 || loop->running > 0) return false;
    lsock__io_stop(loop, &loop->wake_io, LSOCK__READABLE | LSOCK__WRITABLE);
    lsock__plat_close(loop->wake_rfd);
    if (loop->wake_wfd != loop->wake_rfd) lsock__plat_close(loop->wake_wfd);
    lsock__backend_free(loop->backend);
    free_retired(loop);
    free(loop->watchers);
    free(loop->heap);
    free(loop->scratch);
    free(loop);
    return true;
}

void lsock__loop_ref_objects(lsock_loop *loop, int delta)
{
    loop->objects += delta;
}

void lsock__loop_ref_listeners(lsock_loop *loop, int delta)
{
    loop->listeners += delta;
}

char *lsock__loop_scratch(lsock_loop *loop, size_t *size)
{
    if (!loop->scratch) loop->scratch = malloc(SCRATCH_SIZE);
    *size = loop->scratch ? SCRATCH_SIZE : 0;
    return loop->scratch;
}

static int loop_alive(const lsock_loop *loop)
{
    return loop->active_ios > 0 || loop->listeners > 0 || loop->nheap > 0 ||
           !pending_empty(&loop->pending);
}

/* Runs the timers due now that were started before this pass: a timer (re)started by a
 * callback of the pass, even with 0 ms, waits for the next pass (as libuv's), so a timer
 * restarting itself cannot keep one pass going forever. Timers started during the pass
 * have a larger seq and, due no earlier than now, sort after every timer eligible now. */
static void run_timers(lsock_loop *loop)
{
    if (loop->nheap == 0) return; /* no clock read when no timer is started */
    uint64_t now = lsock__now_ms(), pass = loop->timer_seq;
    while (loop->nheap > 0 && loop->heap[0]->due <= now && loop->heap[0]->seq < pass) {
        if (inherited(loop)) return; /* a callback forked: not the child's to run */
        lsock_timer *t = loop->heap[0];
        heap_remove(loop, t);
        if (t->repeat) {
            t->due = t->repeat > UINT64_MAX - now ? UINT64_MAX : now + t->repeat;
            t->seq = loop->timer_seq++;
            heap_insert(loop, t); /* cannot fail: the slot was just freed */
        }
        t->in_cb++;
        t->cb(t, t->userdata);
        t->in_cb--;
        if (t->dead && t->in_cb == 0) free(t);
    }
}

static int next_timeout(const lsock_loop *loop)
{
    if (!pending_empty(&loop->pending)) return 0;
    if (loop->nheap == 0) return -1;
    uint64_t now = lsock__now_ms(), due = loop->heap[0]->due;
    if (due <= now) return 0;
    uint64_t d = due - now;
    return d > 0x7fffffff ? 0x7fffffff : (int)d;
}

/* Called by the backend per ready descriptor. */
static void report(lsock_loop *loop, int fd, unsigned revents)
{
    if (fd < 0 || fd >= loop->nwatchers) return;
    /* After a fork in a callback, the rest of the batch is the parent's: the child neither
     * takes it from an inherited loop nor from the backend its lsock_loop_fork() replaced. */
    if (loop->dispatch_epoch != loop->backend_epoch || inherited(loop)) return;
    lsock__io *io = loop->watchers[fd];
    if (!io) return;
    unsigned ev = revents & io->events;
    if (ev) io->cb(io, ev);
}

/* Busy polling (lsock_loop_set_busy_poll): asks the backend without waiting until it reports
 * something or the busy time (at most the timeout, ms; -1 none) is over. Returns 1 when
 * events were reported (or the run must end), 0 when the caller should block. */
static int busy_poll(lsock_loop *loop, int timeout)
{
    uint64_t limit = (uint64_t)loop->busy_poll_us;
    if (timeout >= 0 && (uint64_t)timeout * 1000u < limit) limit = (uint64_t)timeout * 1000u;
    uint64_t start = lsock__now_us();
    do {
        int n = lsock__backend_poll(loop->backend, 0, report, loop);
        if (n > 0 || (n < 0 && n != -EINTR)) return 1;
        if (loop->stop_flag || inherited(loop)) return 1;
    } while (lsock__now_us() - start < limit);
    return 0;
}

/* Polls the backend; a signal (EINTR) before any event or the timeout is waited through with
 * the time that is left, so that LSOCK_RUN_ONCE returns only after something happened. */
static void poll_backend(lsock_loop *loop, int timeout)
{
    uint64_t deadline = timeout > 0 ? lsock__now_ms() + (uint64_t)timeout : 0;
    unsigned outer = loop->dispatch_epoch; /* a nested run polls inside an outer dispatch */
    loop->dispatch_epoch = loop->backend_epoch;
    if (timeout != 0 && loop->busy_poll_us > 0 && busy_poll(loop, timeout)) {
        loop->dispatch_epoch = outer;
        return;
    }
    if (timeout > 0) { /* what busy polling left of the timeout */
        uint64_t now = lsock__now_ms();
        timeout = now >= deadline ? 0 : (int)(deadline - now);
    }
    while (lsock__backend_poll(loop->backend, timeout, report, loop) == -EINTR) {
        if (loop->stop_flag || inherited(loop)) break;
        if (timeout > 0) {
            uint64_t now = lsock__now_ms();
            if (now >= deadline) break;
            timeout = (int)(deadline - now);
        }
    }
    loop->dispatch_epoch = outer;
}

/* Frees the backends that lsock_loop_fork() replaced while they were dispatching events:
 * once no run is left on the stack, nothing reads them any more. */
static void free_retired(lsock_loop *loop)
{
    for (int i = 0; i < loop->nretired; i++)
        lsock__backend_free(loop->retired[i]);
    free(loop->retired);
    loop->retired = NULL;
    loop->nretired = 0;
}

int lsock_loop_run(lsock_loop *loop, lsock_run_mode mode)
{
    if (!loop) return -1;
    if (mode != LSOCK_RUN_DEFAULT && mode != LSOCK_RUN_ONCE && mode != LSOCK_RUN_NOWAIT) return -1;
    if (inherited(loop)) return -1; /* a child runs an inherited loop after lsock_loop_fork() */
    /* A stop asked for outside any run is forgotten; one asked for inside a run (a nested
     * one included) ends every run up to the outermost. */
    if (loop->running == 0) loop->stop_flag = 0;
    loop->running++;
    int alive = loop_alive(loop);
    while (alive && !loop->stop_flag) {
        run_timers(loop);
        int ran = run_pending(loop);
        if (inherited(loop)) break; /* a callback forked: see the fork policy in lsock.h */
        if (!loop_alive(loop)) {    /* the callbacks just run may have ended all work */
            alive = 0;
            break;
        }
        int timeout = 0;
        /* RUN_ONCE does not block once deferred callbacks have run: they were the event. */
        if (mode == LSOCK_RUN_DEFAULT || (mode == LSOCK_RUN_ONCE && ran == 0))
            timeout = loop->stop_flag ? 0 : next_timeout(loop);
        loop->iteration++;
        poll_backend(loop, timeout);
        if (inherited(loop)) break;
        run_timers(loop);
        alive = loop_alive(loop);
        if (mode != LSOCK_RUN_DEFAULT) break;
    }
    if (--loop->running == 0) {
        loop->stop_flag = 0;
        if (loop->nretired > 0) free_retired(loop);
    }
    return inherited(loop) ? -1 : alive;
}

void lsock_loop_stop(lsock_loop *loop)
{
    if (loop) loop->stop_flag = 1;
}

void lsock_loop_wakeup(lsock_loop *loop)
{
    if (!loop || inherited(loop))
        return; /* the wakeup channel of an inherited loop is the parent's */
    if (atomic_exchange(&loop->wake_pending, 1) == 0) lsock__plat_wakeup_signal(loop->wake_wfd);
}

uint64_t lsock__loop_iteration(const lsock_loop *loop)
{
    return loop->iteration;
}

int lsock__loop_inherited(const lsock_loop *loop)
{
    return inherited(loop);
}

int lsock_loop_backend_fd(lsock_loop *loop)
{
    return loop && !inherited(loop) ? lsock__backend_fd(loop->backend) : -1;
}

void lsock_loop_set_busy_poll(lsock_loop *loop, int usecs)
{
    if (!loop) return;
    loop->busy_poll_us = usecs < 0 ? 0 : usecs > LSOCK_BUSY_POLL_MAX ? LSOCK_BUSY_POLL_MAX : usecs;
}

int lsock_loop_busy_poll(const lsock_loop *loop)
{
    return loop ? loop->busy_poll_us : 0;
}

int lsock_loop_backend_timeout(lsock_loop *loop)
{
    return loop ? next_timeout(loop) : -1;
}

const char *lsock_loop_backend_name(lsock_loop *loop)
{
    return lsock__backend_name();
}

bool lsock_loop_fork(lsock_loop *loop)
{
    if (!loop) return false;
    unsigned gen = lsock__plat_fork_generation();
    if (loop->fork_gen == gen) return true; /* not inherited: nothing to do */
    /* Called from a callback (a fork inside a callback), the old backend may be dispatching
     * events further up the stack: it is kept until the outermost run returns. */
    if (loop->running > 0) {
        lsock__backend **r = realloc(loop->retired, (size_t)(loop->nretired + 1) * sizeof *r);
        if (!r) return false;
        loop->retired = r;
    }
    lsock__backend *b = lsock__backend_new();
    int rfd = -1, wfd = -1;
    if (!b || lsock__plat_wakeup_open(&rfd, &wfd) < 0 || grow_watchers(loop, rfd) < 0) goto fail;
    /* The new backend watches what the inherited one did for this process, the old wakeup
     * channel (shared with the parent) replaced by a new one. */
    for (int fd = 0; fd < loop->nwatchers; fd++) {
        lsock__io *io = loop->watchers[fd];
        if (!io || io == &loop->wake_io || io->installed == 0) continue;
        if (lsock__backend_set(b, fd, 0, io->installed) < 0) goto fail;
    }
    if (lsock__backend_set(b, rfd, 0, LSOCK__READABLE) < 0) goto fail;
    /* Only the child's copies of the old backend and wakeup descriptors close here. */
    if (loop->watchers[loop->wake_rfd] == &loop->wake_io) loop->watchers[loop->wake_rfd] = NULL;
    lsock__plat_close(loop->wake_rfd);
    if (loop->wake_wfd != loop->wake_rfd) lsock__plat_close(loop->wake_wfd);
    if (loop->running > 0)
        loop->retired[loop->nretired++] = loop->backend;
    else
        lsock__backend_free(loop->backend);
    loop->backend = b;
    loop->backend_epoch++;
    loop->wake_rfd = rfd;
    loop->wake_wfd = wfd;
    loop->wake_io.fd = rfd;
    loop->wake_io.events = loop->wake_io.installed = LSOCK__READABLE;
    loop->watchers[rfd] = &loop->wake_io;
    atomic_store(&loop->wake_pending, 0);
    loop->fork_gen = gen;
    return true;
fail:
    if (rfd >= 0) lsock__plat_close(rfd);
    if (wfd >= 0 && wfd != rfd) lsock__plat_close(wfd);
    if (b) lsock__backend_free(b);
    return false;
}

/* ---- timers -------------------------------------------------------------------------- */

lsock_timer *lsock_timer_new(lsock_loop *loop, void (*cb)(lsock_timer *, void *), void *userdata)
{
    if (!loop || !cb) return NULL;
    lsock_timer *t = calloc(1, sizeof *t);
    if (!t) return NULL;
    t->loop = loop;
    t->cb = cb;
    t->userdata = userdata;
    t->heap_index = SIZE_MAX;
    loop->objects++;
    return t;
}

bool lsock_timer_start(lsock_timer *t, uint64_t timeout_ms, uint64_t repeat_ms)
{
    if (!t || t->dead) return false;
    heap_remove(t->loop, t);
    uint64_t now = lsock__now_ms();
    t->due = timeout_ms > UINT64_MAX - now ? UINT64_MAX : now + timeout_ms;
    t->repeat = repeat_ms;
    t->seq = t->loop->timer_seq++;
    return heap_insert(t->loop, t) == 0;
}

void lsock_timer_stop(lsock_timer *t)
{
    if (t) heap_remove(t->loop, t);
}

bool lsock_timer_is_active(const lsock_timer *t)
{
    return t && t->heap_index != SIZE_MAX;
}

void lsock_timer_free(lsock_timer *t)
{
    if (!t || t->dead) return;
    heap_remove(t->loop, t);
    t->loop->objects--;
    t->dead = 1;
    if (t->in_cb == 0) free(t);
}
