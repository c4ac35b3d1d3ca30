/*
 * epoll backend (Linux), level-triggered: a watcher that leaves data unread is reported
 * again, so a read-buffer limit or a callback that returns early never loses an event.
 *
 * Closing a descriptor skips EPOLL_CTL_DEL when nothing else can hold its open file (the
 * core tells: lsock__io_close): the kernel drops a registration when the last descriptor of
 * the file closes, so the call is pure cost there (two of the system calls of a short
 * connection). A registration whose file lived on elsewhere would stay, and keep reporting
 * under a number that may be reused; for those the DEL still happens.
 */
#include "platform.h"

#include <errno.h>
#include <stdlib.h>
#include <sys/epoll.h>
#include <unistd.h>

#define MAX_EVENTS 256

struct lsock__backend {
    int epfd;
    struct epoll_event events[MAX_EVENTS];
};

lsock__backend *lsock__backend_new(void)
{
    lsock__backend *b = malloc(sizeof *b);
    if (!b) return NULL;
    b->epfd = epoll_create1(EPOLL_CLOEXEC);
    if (b->epfd < 0) {
        free(b);
        return NULL;
    }
    return b;
}

void lsock__backend_free(lsock__backend *b)
{
    close(b->epfd);
    free(b);
}

int lsock__backend_set(lsock__backend *b, int fd, unsigned old, unsigned events)
{
    struct epoll_event ev = {0};
    ev.events =
        ((events & LSOCK__READABLE) ? EPOLLIN : 0u) | ((events & LSOCK__WRITABLE) ? EPOLLOUT : 0u);
    ev.data.fd = fd;
    int op = old == 0 ? EPOLL_CTL_ADD : events == 0 ? EPOLL_CTL_DEL : EPOLL_CTL_MOD;
    if (epoll_ctl(b->epfd, op, fd, &ev) == 0) return 0;
    /* A descriptor closed and reused behind our back: re-add or forget it quietly. */
    if (op == EPOLL_CTL_MOD && errno == ENOENT && epoll_ctl(b->epfd, EPOLL_CTL_ADD, fd, &ev) == 0)
        return 0;
    if (op == EPOLL_CTL_DEL && (errno == ENOENT || errno == EBADF)) return 0;
    return -errno;
}

int lsock__backend_reports_again(void)
{
    return 1; /* level-triggered */
}

int lsock__backend_forget(lsock__backend *b, int fd, unsigned old, int shared)
{
    if (!shared) return 0;
    return lsock__backend_set(b, fd, old, 0);
}

int lsock__backend_poll(lsock__backend *b, int timeout, void (*report)(lsock_loop *, int, unsigned),
                        lsock_loop *loop)
{
    int n = epoll_wait(b->epfd, b->events, MAX_EVENTS, timeout);
    if (n < 0) return -errno; /* -EINTR included: the loop waits on */
    for (int i = 0; i < n; i++) {
        unsigned e = b->events[i].events, out = 0;
        if (e & (EPOLLIN | EPOLLHUP | EPOLLERR)) out |= LSOCK__READABLE;
        if (e & (EPOLLOUT | EPOLLHUP | EPOLLERR)) out |= LSOCK__WRITABLE;
        report(loop, b->events[i].data.fd, out);
    }
    return n;
}

int lsock__backend_fd(lsock__backend *b)
{
    return b->epfd;
}

const char *lsock__backend_name(void)
{
    return "epoll";
}
