/*
 * poll() backend: the portable fallback, also built on Linux (-DLSOCK_BACKEND=poll) so that
 * it is tested there. A dense pollfd array plus a descriptor-to-slot index; removal swaps
 * the last slot in. Ready descriptors are collected before any callback runs, because
 * callbacks change the array.
 */
#include "platform.h"

#include <errno.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>

struct lsock__backend {
    struct pollfd *fds;
    int nfds, capfds;
    int *slot; /* descriptor -> index in fds, -1 if absent */
    int nslot;
    struct pollfd *ready;
    int capready;
};

lsock__backend *lsock__backend_new(void)
{
    return calloc(1, sizeof(lsock__backend));
}

void lsock__backend_free(lsock__backend *b)
{
    free(b->fds);
    free(b->slot);
    free(b->ready);
    free(b);
}

static int grow(lsock__backend *b, int fd)
{
    if (fd >= b->nslot) {
        int n = b->nslot ? b->nslot : 64;
        while (n <= fd)
            n *= 2;
        int *s = realloc(b->slot, (size_t)n * sizeof *s);
        if (!s) return -ENOMEM;
        for (int i = b->nslot; i < n; i++)
            s[i] = -1;
        b->slot = s;
        b->nslot = n;
    }
    if (b->nfds == b->capfds) {
        int n = b->capfds ? b->capfds * 2 : 64;
        struct pollfd *f = realloc(b->fds, (size_t)n * sizeof *f);
        if (!f) return -ENOMEM;
        b->fds = f;
        b->capfds = n;
    }
    return 0;
}

int lsock__backend_set(lsock__backend *b, int fd, unsigned old, unsigned events)
{
    short pev = (short)(((events & LSOCK__READABLE) ? POLLIN : 0) |
                        ((events & LSOCK__WRITABLE) ? POLLOUT : 0));
    int idx = fd < b->nslot ? b->slot[fd] : -1;
    if (events == 0) {
        if (idx < 0) return 0;
        b->nfds--;
        if (idx != b->nfds) {
            b->fds[idx] = b->fds[b->nfds];
            b->slot[b->fds[idx].fd] = idx;
        }
        b->slot[fd] = -1;
        return 0;
    }
    if (idx < 0) {
        int rc = grow(b, fd);
        if (rc < 0) return rc;
        idx = b->nfds++;
        b->fds[idx].fd = fd;
        b->slot[fd] = idx;
    }
    b->fds[idx].events = pev;
    b->fds[idx].revents = 0;
    return 0;
}

int lsock__backend_reports_again(void)
{
    return 1; /* level-triggered */
}

int lsock__backend_forget(lsock__backend *b, int fd, unsigned old, int shared)
{
    (void)shared; /* the backend's own table must always forget the descriptor */
    return lsock__backend_set(b, fd, old, 0);
}

int lsock__backend_poll(lsock__backend *b, int timeout, void (*report)(lsock_loop *, int, unsigned),
                        lsock_loop *loop)
{
    int n = poll(b->fds, (nfds_t)b->nfds, timeout);
    if (n < 0) return -errno; /* -EINTR included: the loop waits on */
    if (n == 0) return 0;
    if (n > b->capready) {
        struct pollfd *r = realloc(b->ready, (size_t)b->capfds * sizeof *r);
        if (!r) return -ENOMEM;
        b->ready = r;
        b->capready = b->capfds;
    }
    int k = 0;
    for (int i = 0; i < b->nfds && k < n; i++)
        if (b->fds[i].revents) b->ready[k++] = b->fds[i];
    for (int i = 0; i < k; i++) {
        short e = b->ready[i].revents;
        unsigned out = 0;
        if (e & (POLLIN | POLLHUP | POLLERR | POLLNVAL)) out |= LSOCK__READABLE;
        if (e & (POLLOUT | POLLHUP | POLLERR | POLLNVAL)) out |= LSOCK__WRITABLE;
        report(loop, b->ready[i].fd, out);
    }
    return k;
}

int lsock__backend_fd(lsock__backend *b)
{
    return -1;
}

const char *lsock__backend_name(void)
{
    return "poll";
}
