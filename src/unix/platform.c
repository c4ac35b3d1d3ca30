/*
 * The Unix platform layer: AF_UNIX stream sockets for lsock's core. Every descriptor is
 * non-blocking and close-on-exec from birth, writes never raise SIGPIPE (MSG_NOSIGNAL, or
 * SO_NOSIGPIPE where that is the way), EINTR is retried, and errors travel back as -errno.
 */
#include "platform.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>
#ifdef __linux__
#include <sys/eventfd.h>
#endif

#ifndef MSG_NOSIGNAL
#define MSG_NOSIGNAL 0
#endif

uint64_t lsock__now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

uint64_t lsock__now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

size_t lsock__plat_name_max(void)
{
    struct sockaddr_un sa;
    return sizeof sa.sun_path - 1;
}

const char *lsock__plat_strerror(int err)
{
    return strerror(err < 0 ? -err : err);
}

static int set_flags(int fd)
{
    int fl = fcntl(fd, F_GETFL);
    if (fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0) return -errno;
    int fdfl = fcntl(fd, F_GETFD);
    if (fdfl < 0 || fcntl(fd, F_SETFD, fdfl | FD_CLOEXEC) < 0) return -errno;
    return 0;
}

/* ---- forks --------------------------------------------------------------------------- */

/* Forks begun (the prepare handler) and finished (the parent's and the child's handlers),
 * each counted in steps of 2. A stamp is the begun count, made odd when a fork was under way
 * as it was read: that fork may still copy a descriptor made after the stamp. */
static atomic_uint forks_begun, forks_done;
static atomic_uint fork_generation; /* forks this process descends from (its copy only) */
static atomic_int fork_unknown;
static pthread_once_t fork_once = PTHREAD_ONCE_INIT;

static void fork_begins(void)
{
    lsock__socket_before_fork();
    atomic_fetch_add(&forks_begun, 2);
}

static void fork_done(void)
{
    atomic_fetch_add(&forks_done, 2);
}

static void fork_child(void)
{
    atomic_fetch_add(&forks_done, 2);
    atomic_fetch_add(&fork_generation, 1);
}

static void watch_forks(void)
{
    if (pthread_atfork(fork_begins, fork_done, fork_child) != 0) atomic_store(&fork_unknown, 1);
}

unsigned lsock__plat_fork_generation(void)
{
    pthread_once(&fork_once, watch_forks);
    /* Without the handlers, the process id tells a child from its parent (one system call). */
    if (atomic_load(&fork_unknown)) return (unsigned)getpid();
    return atomic_load(&fork_generation);
}

unsigned lsock__plat_fork_stamp(void)
{
    pthread_once(&fork_once, watch_forks);
    unsigned begun = atomic_load(&forks_begun); /* begun first: see lsock__plat_forked_since */
    unsigned done = atomic_load(&forks_done);
    return begun | (done != begun ? 1u : 0u);
}

/* A fork that copied the descriptor either had begun before the stamp was read (begun !=
 * done then: odd stamp) or began after it (begun has moved on). One that had begun and
 * finished before the stamp ran its fork(2) before the descriptor existed. */
int lsock__plat_forked_since(unsigned stamp)
{
    if (atomic_load(&fork_unknown)) return 1; /* forks cannot be counted: assume one */
    return (stamp & 1u) || stamp != atomic_load(&forks_begun);
}

/*
 * The kernel's send buffer bounds the bytes in flight on a connection. The default (about
 * 208 KiB on Linux) makes two event loops streaming to each other wake each other far more
 * often than blocking writers do; 512 KiB measured 0.8-0.9x of raw blocking throughput ->
 * 0.95-1.2x (docs/performance.md). The cost: a reader that stops reading can pin that much
 * kernel memory per connection instead of the default. Raised the first time the kernel
 * refuses a write, so short exchanges pay no system call for it.
 */
#define SEND_BUFFER_SIZE (512 * 1024)

int64_t lsock__plat_bytes_in_kernel(int fd)
{
    int n = 0;
    return ioctl(fd, FIONREAD, &n) == 0 ? (int64_t)n : -1;
}

void lsock__plat_grow_send_buffer(int fd)
{
    int size = SEND_BUFFER_SIZE;
    setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &size, sizeof size); /* best effort */
}

static int new_socket(void)
{
#if defined(SOCK_CLOEXEC) && defined(SOCK_NONBLOCK)
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0) return -errno;
#else
    int fd = socket(AF_UNIX, SOCK_STREAM, 0);
    if (fd < 0) return -errno;
    int rc = set_flags(fd);
    if (rc < 0) {
        close(fd);
        return rc;
    }
#endif
#ifdef SO_NOSIGPIPE
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_NOSIGPIPE, &one, sizeof one);
#endif
    return fd;
}

/* A socket address; dirfd is a directory descriptor held open for a long path. */
struct uaddr {
    struct sockaddr_un sa;
    socklen_t len;
    int dirfd;
};

const char *lsock__plat_name_limit_text(void)
{
#ifdef __linux__
    return "name too long: the limit is 107 bytes for a socket address; a longer path works "
           "when its last component fits after /proc/self/fd/N/";
#else
    return "name too long: the limit is sizeof(sun_path) - 1 bytes";
#endif
}

/*
 * Fills a for path. A path longer than sun_path is reached on Linux through a descriptor of
 * its directory ("/proc/self/fd/N/name"), so long paths work and are never truncated.
 * Returns 0 or -errno (-ENAMETOOLONG when even that does not fit). Close with drop_addr().
 */
static int make_addr(struct uaddr *a, const char *path, int abstract)
{
    size_t n = strlen(path), room = sizeof a->sa.sun_path - 1;
    memset(&a->sa, 0, sizeof a->sa);
    a->sa.sun_family = AF_UNIX;
    a->dirfd = -1;
    if (abstract) {
#ifdef __linux__
        if (n > room) return -ENAMETOOLONG;
        memcpy(a->sa.sun_path + 1, path, n);
        a->len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + 1 + n);
        return 0;
#else
        return -EAFNOSUPPORT;
#endif
    }
    if (n <= room) {
        memcpy(a->sa.sun_path, path, n + 1);
        a->len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n + 1);
        return 0;
    }
#ifdef __linux__
    const char *slash = strrchr(path, '/');
    if (!slash || slash == path || slash[1] == '\0') return -ENAMETOOLONG;
    char *dir = strndup(path, (size_t)(slash - path));
    if (!dir) return -ENOMEM;
    a->dirfd = open(dir, O_PATH | O_DIRECTORY | O_CLOEXEC);
    int e = errno;
    free(dir);
    if (a->dirfd < 0) return -e;
    int k =
        snprintf(a->sa.sun_path, sizeof a->sa.sun_path, "/proc/self/fd/%d/%s", a->dirfd, slash + 1);
    if (k < 0 || (size_t)k > room) {
        close(a->dirfd);
        a->dirfd = -1;
        return -ENAMETOOLONG;
    }
    a->len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + (size_t)k + 1);
    return 0;
#else
    return -ENAMETOOLONG;
#endif
}

static void drop_addr(struct uaddr *a)
{
    if (a->dirfd >= 0) close(a->dirfd);
    a->dirfd = -1;
}

static int do_connect(int fd, const char *path, int abstract)
{
    struct uaddr a;
    int rc = make_addr(&a, path, abstract);
    if (rc < 0) return rc;
    for (;;) {
        if (connect(fd, (struct sockaddr *)&a.sa, a.len) == 0) {
            rc = 0;
            break;
        }
        if (errno == EINTR) continue;
        /* A non-blocking AF_UNIX connect is immediate; EINPROGRESS only on exotic systems. */
        rc = (errno == EINPROGRESS || errno == EWOULDBLOCK) ? -EAGAIN : -errno;
        break;
    }
    drop_addr(&a);
    return rc;
}

int lsock__plat_connect(const char *path, int abstract, int *fd_out)
{
    *fd_out = -1;
    int fd = new_socket();
    if (fd < 0) return fd;
    int rc = do_connect(fd, path, abstract);
    if (rc == 0) {
        *fd_out = fd;
        return fd;
    }
    if (rc == -EAGAIN) {
        *fd_out = fd;
        return rc;
    }
    close(fd);
    return rc;
}

int lsock__plat_reconnect(int fd, const char *path, int abstract)
{
    int rc = do_connect(fd, path, abstract);
    if (rc == -EISCONN) return 0;
    return rc;
}

int lsock__plat_probe(const char *path)
{
    int fd = -1;
    int rc = lsock__plat_connect(path, 0, &fd);
    if (fd >= 0) close(fd);
    if (rc >= 0 || rc == -EAGAIN) return 1;
    if (rc == -ECONNREFUSED) return 0;
    return rc;
}

static int bind_listen(int fd, const char *path, int abstract, int backlog)
{
    struct uaddr a;
    int rc = make_addr(&a, path, abstract);
    if (rc < 0) return rc;
    if (bind(fd, (struct sockaddr *)&a.sa, a.len) < 0)
        rc = -errno;
    else if (listen(fd, backlog) < 0)
        rc = -errno;
    drop_addr(&a);
    return rc;
}

void (*lsock__test_hook_published)(const char *path);

/* Qt's file modes for the access options: user 0700, group 0070, other 0007. */
static mode_t access_mode(unsigned access)
{
    mode_t m = 0;
    if (access & LSOCK_USER_ACCESS) m |= S_IRWXU;
    if (access & LSOCK_GROUP_ACCESS) m |= S_IRWXG;
    if (access & LSOCK_OTHER_ACCESS) m |= S_IRWXO;
    return m;
}

/*
 * Every socket file is made in a fresh private directory (mkdtemp: a new name, mode 0700,
 * never an existing path, so nothing planted in a shared /tmp is used): bound and listening
 * there, given its mode (with access options; else the umask's, as a plain bind), its device
 * and inode read, then hard-linked to its public name. So:
 *  - link() never replaces an existing file: a live server's socket is never clobbered;
 *  - no client reaches the socket before it listens with its final mode, and a socket file
 *    lsock publishes is never "bound but not listening" (a probe that is refused means a
 *    dead server, not one that is starting);
 *  - the device and inode that lsock__plat_unlink_if_same() checks on close are those of the
 *    file lsock made, read before anyone else could replace it at the public name.
 */
static int listen_private(int fd, const char *path, unsigned access, int backlog, uint64_t *dev,
                          uint64_t *ino)
{
    size_t n = strlen(path);
    char *dir = malloc(n + 16);
    if (!dir) return -ENOMEM;
    memcpy(dir, path, n);
    memcpy(dir + n, ".XXXXXX", 8);
    if (!mkdtemp(dir)) {
        int e = -errno;
        free(dir);
        return e;
    }
    size_t dl = strlen(dir);
    char *tmp = malloc(dl + 3);
    if (!tmp) {
        rmdir(dir);
        free(dir);
        return -ENOMEM;
    }
    memcpy(tmp, dir, dl);
    memcpy(tmp + dl, "/s", 3);
    struct stat st;
    int rc = bind_listen(fd, tmp, 0, backlog);
    if (rc == 0 && access && chmod(tmp, access_mode(access)) < 0) rc = -errno;
    if (rc == 0 && lstat(tmp, &st) < 0) rc = -errno;
    if (rc == 0 && link(tmp, path) < 0) rc = -errno;
    unlink(tmp);
    rmdir(dir);
    free(tmp);
    free(dir);
    if (rc == 0) {
        *dev = (uint64_t)st.st_dev;
        *ino = (uint64_t)st.st_ino;
        if (lsock__test_hook_published) lsock__test_hook_published(path);
    }
    return rc;
}

int lsock__plat_listen(const char *path, int abstract, unsigned access, const char *sddl,
                       int backlog, uint64_t *dev, uint64_t *ino)
{
    (void)sddl; /* file modes, no security descriptors */
    *dev = *ino = 0;
    int fd = new_socket();
    if (fd < 0) return fd;
    int rc;
    if (!abstract) {
        /* The socket is bound under a private name and linked to its public one, which has no
         * length limit: check first that clients can reach the public name. */
        struct uaddr a;
        rc = make_addr(&a, path, 0);
        drop_addr(&a);
        if (rc == 0) rc = listen_private(fd, path, access, backlog, dev, ino);
    } else {
        rc = bind_listen(fd, path, 1, backlog);
    }
    if (rc < 0) {
        close(fd);
        return rc;
    }
    return fd;
}

int lsock__plat_accept(int lfd)
{
    for (;;) {
#ifdef __linux__
        int fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
#else
        int fd = accept(lfd, NULL, NULL);
#endif
        if (fd >= 0) {
#ifndef __linux__
            int rc = set_flags(fd);
            if (rc < 0) {
                close(fd);
                return rc;
            }
#endif
#ifdef SO_NOSIGPIPE
            int one = 1;
            setsockopt(fd, SOL_SOCKET, SO_NOSIGPIPE, &one, sizeof one);
#endif
            return fd;
        }
        if (errno == EINTR || errno == ECONNABORTED) continue;
        if (errno == EWOULDBLOCK) return -EAGAIN;
        return -errno;
    }
}

/* Every read of a connection is a recvmsg() with room for the descriptors a peer may send
 * (SCM_RIGHTS): a plain recv() would make the kernel close them unseen. They arrive
 * close-on-exec (MSG_CMSG_CLOEXEC, or FD_CLOEXEC set at once where there is no such flag). */
#ifndef MSG_CMSG_CLOEXEC
#define MSG_CMSG_CLOEXEC 0
#endif

static void take_rights(struct msghdr *m, lsock__fds_in *in)
{
    for (struct cmsghdr *c = CMSG_FIRSTHDR(m); c; c = CMSG_NXTHDR(m, c)) {
        if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS) continue;
        size_t n = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
        const unsigned char *data = CMSG_DATA(c);
        for (size_t i = 0; i < n; i++) {
            int fd;
            memcpy(&fd, data + i * sizeof fd, sizeof fd);
            if (MSG_CMSG_CLOEXEC == 0) (void)fcntl(fd, F_SETFD, FD_CLOEXEC);
            if (in->count < LSOCK__FDS_MAX)
                in->fd[in->count++] = fd;
            else {
                close(fd); /* beyond what one write can carry: never from lsock */
                in->truncated = 1;
            }
        }
    }
    if (m->msg_flags & MSG_CTRUNC) in->truncated = 1;
}

static int64_t read_with_rights(int fd, struct iovec *v, int nv, int flags, lsock__fds_in *in)
{
    union {
        struct cmsghdr align;
        char buf[CMSG_SPACE(sizeof(int) * LSOCK__FDS_MAX)];
    } ctl;
    struct msghdr m;
    memset(&m, 0, sizeof m);
    m.msg_iov = v;
    m.msg_iovlen = (size_t)nv;
    m.msg_control = ctl.buf;
    m.msg_controllen = sizeof ctl.buf;
    in->count = 0;
    in->truncated = 0;
    in->more = 0;
#ifdef __linux__
    /* Linux ends a read after the bytes that carried descriptors, and lsock sends them with
     * one byte of their own (lsock__plat_write_fds): they belong to the last byte read. */
    in->last = 1;
#else
    /* The BSDs end a read before a record with control data: the first byte read. */
    in->last = 0;
#endif
    for (;;) {
        ssize_t r = recvmsg(fd, &m, flags | MSG_CMSG_CLOEXEC);
        if (r >= 0) {
            if (m.msg_controllen > 0 || (m.msg_flags & MSG_CTRUNC)) {
                take_rights(&m, in);
                in->more = 1; /* a read ends at the bytes that carried descriptors */
            }
            return r;
        }
        if (errno == EINTR) continue;
        if (errno == EWOULDBLOCK) return -EAGAIN;
        return -errno;
    }
}

int64_t lsock__plat_read_blocking(int fd, void *buf, size_t n, lsock__fds_in *in)
{
    struct iovec v = {buf, n};
    return read_with_rights(fd, &v, 1, 0, in);
}

int lsock__plat_set_blocking(int fd)
{
    int fl = fcntl(fd, F_GETFL);
    if (fl < 0 || fcntl(fd, F_SETFL, fl & ~O_NONBLOCK) < 0) return -errno;
    return 0;
}

int64_t lsock__plat_read(int fd, void *buf, size_t n, lsock__fds_in *in)
{
    struct iovec v = {buf, n};
    return read_with_rights(fd, &v, 1, MSG_DONTWAIT, in);
}

int64_t lsock__plat_read2(int fd, void *a, size_t an, void *b, size_t bn, lsock__fds_in *in)
{
    struct iovec v[2] = {{a, an}, {b, bn}};
    return read_with_rights(fd, v, bn > 0 ? 2 : 1, MSG_DONTWAIT, in);
}

int64_t lsock__plat_write(int fd, const void *buf, size_t n)
{
    for (;;) {
        ssize_t r = send(fd, buf, n, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (r >= 0) return r;
        if (errno == EINTR) continue;
        if (errno == EWOULDBLOCK) return -EAGAIN;
        return -errno;
    }
}

/* sendmsg() without SIGPIPE or blocking, EINTR retried: count, or -errno (-EAGAIN: full). */
static int64_t send_message(int fd, const struct msghdr *m)
{
    for (;;) {
        ssize_t r = sendmsg(fd, m, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (r >= 0) return r;
        if (errno == EINTR) continue;
        if (errno == EWOULDBLOCK) return -EAGAIN;
        return -errno;
    }
}

int64_t lsock__plat_writev(int fd, const lsock_iovec *iov, int n)
{
    struct iovec v[LSOCK__IOV_BATCH];
    for (int i = 0; i < n; i++) {
        v[i].iov_base = (void *)iov[i].base;
        v[i].iov_len = iov[i].len;
    }
    struct msghdr m;
    memset(&m, 0, sizeof m);
    m.msg_iov = v;
    m.msg_iovlen = (size_t)n;
    return send_message(fd, &m);
}

int64_t lsock__plat_write_fds(int fd, const void *buf, size_t n, const intptr_t *fds, int count)
{
    union {
        struct cmsghdr align;
        char buf[CMSG_SPACE(sizeof(int) * LSOCK__FDS_MAX)];
    } ctl;
    if (count < 1 || count > LSOCK__FDS_MAX) return -EINVAL;
    memset(&ctl, 0, sizeof ctl);
    struct iovec v = {(void *)buf, n};
    struct msghdr m;
    memset(&m, 0, sizeof m);
    m.msg_iov = &v;
    m.msg_iovlen = 1;
    m.msg_control = ctl.buf;
    m.msg_controllen = CMSG_SPACE(sizeof(int) * (size_t)count);
    struct cmsghdr *c = CMSG_FIRSTHDR(&m);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof(int) * (size_t)count);
    for (int i = 0; i < count; i++) {
        int d = (int)fds[i];
        memcpy(CMSG_DATA(c) + (size_t)i * sizeof d, &d, sizeof d);
    }
    return send_message(fd, &m);
}

int lsock__plat_dup_descriptor(int fd, intptr_t handle, intptr_t *out)
{
    (void)fd;
    if (handle < 0 || handle > INT_MAX) return -EBADF;
    int d = fcntl((int)handle, F_DUPFD_CLOEXEC, 0);
    if (d < 0) return -errno;
    *out = d;
    return 0;
}

void lsock__plat_release_descriptor(int fd, intptr_t handle, int sent)
{
    (void)fd, (void)sent;
    if (handle >= 0) close((int)handle);
}

void lsock__plat_close_descriptor(intptr_t handle)
{
    if (handle >= 0) close((int)handle);
}

int lsock__test_dup_fail;

void lsock__plat_pass_descriptors(int fd)
{
    (void)fd;
}

void lsock__plat_close(int fd)
{
    if (fd >= 0) close(fd); /* never retried on EINTR: the descriptor is gone either way */
}

int lsock__plat_write_in_flight(int fd)
{
    (void)fd;
    return 0; /* what send() took is the kernel's to deliver, whatever the process does */
}

/* The kernel keeps what the socket took and delivers it: nothing lingers in lsock. */
void lsock__plat_close_linger(int fd, int linger_ms)
{
    (void)linger_ms;
    lsock__plat_close(fd);
}

int lsock__plat_wait(int fd, unsigned events, int timeout)
{
    struct pollfd p;
    p.fd = fd;
    p.events = (short)(((events & LSOCK__READABLE) ? POLLIN : 0) |
                       ((events & LSOCK__WRITABLE) ? POLLOUT : 0));
    p.revents = 0;
    uint64_t deadline = timeout >= 0 ? lsock__now_ms() + (uint64_t)timeout : 0;
    for (;;) {
        int rc = poll(&p, 1, timeout);
        if (rc > 0) {
            unsigned out = 0;
            if (p.revents & (POLLIN | POLLHUP | POLLERR | POLLNVAL)) out |= LSOCK__READABLE;
            if (p.revents & (POLLOUT | POLLHUP | POLLERR | POLLNVAL)) out |= LSOCK__WRITABLE;
            return (int)(out & events) ? (int)(out & events) : (int)out;
        }
        if (rc == 0) return 0;
        if (errno != EINTR) return -errno;
        if (timeout >= 0) {
            uint64_t now = lsock__now_ms();
            timeout = now >= deadline ? 0 : (int)(deadline - now);
        }
    }
}

void lsock__plat_sleep_ms(int ms)
{
    poll(NULL, 0, ms);
}

intptr_t lsock__plat_native(int fd)
{
    return fd;
}

int lsock__plat_adopt(intptr_t handle, int listening)
{
    struct stat st;
    if (handle < 0 || handle > INT_MAX) return -EBADF;
    int fd = (int)handle;
    if (fstat(fd, &st) < 0) return -errno;
    if (!S_ISSOCK(st.st_mode)) return -ENOTSOCK;
    int type = 0;
    socklen_t len = sizeof type;
    if (getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &len) < 0) return -errno;
    if (type != SOCK_STREAM) return -EPROTOTYPE;
#ifdef SO_ACCEPTCONN
    int acc = 0;
    len = sizeof acc;
    if (getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &acc, &len) == 0 && (acc != 0) != listening)
        return -EINVAL;
#endif
    if (!listening) {
        struct sockaddr_storage peer;
        socklen_t plen = sizeof peer;
        if (getpeername(fd, (struct sockaddr *)&peer, &plen) < 0) return -errno;
    }
    int rc = set_flags(fd);
    if (rc < 0) return rc;
#ifdef SO_NOSIGPIPE
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_NOSIGPIPE, &one, sizeof one);
#endif
    return fd;
}

int lsock__plat_peer_credentials(int fd, lsock_credentials *out)
{
#if defined(SO_PEERCRED) && defined(__linux__)
    struct ucred cr;
    socklen_t len = sizeof cr;
    if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cr, &len) < 0) return -errno;
    out->pid = cr.pid;
    out->uid = cr.uid;
    out->gid = cr.gid;
    return 0;
#else
    uid_t uid;
    gid_t gid;
    if (getpeereid(fd, &uid, &gid) < 0) return -errno;
    out->pid = -1;
    out->uid = uid;
    out->gid = gid;
#ifdef LOCAL_PEERPID
    pid_t pid;
    socklen_t len = sizeof pid;
    if (getsockopt(fd, SOL_LOCAL, LOCAL_PEERPID, &pid, &len) == 0) out->pid = pid;
#endif
    return 0;
#endif
}

int lsock__test_foreign_user;

int lsock__plat_peer_same_user(int fd, char *detail, size_t size)
{
    lsock_credentials cr = {-1, -1, -1};
    int rc = lsock__plat_peer_credentials(fd, &cr);
    if (rc < 0) return rc;
    if (cr.uid == (int64_t)geteuid() && !lsock__test_foreign_user) return 1;
    snprintf(detail, size, "uid %lld, this process uid %lu", (long long)cr.uid,
             (unsigned long)geteuid());
    return 0;
}

int lsock__plat_peer_sid(int fd, char *buf, size_t size)
{
    (void)fd;
    (void)buf;
    (void)size;
    return -ENOTSUP; /* users are uids */
}

int lsock__plat_check_sddl(const char *sddl)
{
    (void)sddl;
    return -ENOTSUP;
}

/* ---- socket activation (sd_listen_fds(3) without libsystemd) ------------------------------ */

#define LISTEN_FDS_START 3
#define LISTEN_FDS_MAX   4096 /* more is no service manager's doing */

/* A whole decimal number in [min, max] from s, or -1. */
static long strict_number(const char *s, long min, long max)
{
    if (!s || !*s) return -1;
    long v = 0;
    for (const char *p = s; *p; p++) {
        if (*p < '0' || *p > '9' || v > (max - (*p - '0')) / 10) return -1;
        v = v * 10 + (*p - '0');
    }
    return v < min ? -1 : v;
}

/* Whether entry i (0-based) of the colon-separated list names is exactly name. */
static int fdname_is(const char *names, long i, const char *name)
{
    if (!names) return 0;
    const char *p = names;
    for (long k = 0; k < i; k++) {
        p = strchr(p, ':');
        if (!p) return 0;
        p++;
    }
    size_t len = strcspn(p, ":");
    return len == strlen(name) && memcmp(p, name, len) == 0;
}

/* Whether fd is bound to path (a file name; or an abstract name, "\0" + path). */
static int bound_to(int fd, const char *path)
{
    char *local = NULL;
    int abstract = 0;
    if (lsock__plat_local_name(fd, 0, &local, &abstract) < 0 || !local) return 0;
    int same = strcmp(local, path) == 0;
    free(local);
    return same;
}

static int usable_listener(int fd)
{
    struct sockaddr_storage sa;
    socklen_t len = sizeof sa;
    if (getsockname(fd, (struct sockaddr *)&sa, &len) < 0) return errno == EBADF ? -EBADF : -EINVAL;
    if (sa.ss_family != AF_UNIX) return -EINVAL;
    int rc = lsock__plat_adopt(fd, 1); /* a listening stream socket; non-blocking, cloexec */
    if (rc < 0) return rc == -EBADF ? rc : -EINVAL;
    return 0;
}

static int activated_find(const char *name, const char *path, int *fd);

/* Passed descriptors already taken by a server of this process: never handed out twice (a
 * server that closed one may see its number reused by anything). */
static unsigned char activated_taken[LISTEN_FDS_MAX];
static pthread_mutex_t activated_lock = PTHREAD_MUTEX_INITIALIZER;

int lsock__plat_activated_listener(const char *name, const char *path, int *fd)
{
    pthread_mutex_lock(&activated_lock);
    int rc = activated_find(name, path, fd);
    if (rc == 1) activated_taken[*fd - LISTEN_FDS_START] = 1;
    pthread_mutex_unlock(&activated_lock);
    return rc;
}

static int activated_find(const char *name, const char *path, int *fd)
{
    *fd = -1;
    long pid = strict_number(getenv("LISTEN_PID"), 1, LONG_MAX);
    long n = strict_number(getenv("LISTEN_FDS"), 1, LISTEN_FDS_MAX);
    if (pid < 0 || n < 0 || (pid_t)pid != getpid()) return 0;
    const char *names = getenv("LISTEN_FDNAMES");
    long match = -1;
    for (long i = 0; i < n && match < 0; i++)
        if (!activated_taken[i] && fdname_is(names, i, name)) match = i;
    for (long i = 0; i < n && match < 0; i++)
        if (!activated_taken[i] && bound_to(LISTEN_FDS_START + (int)i, path)) match = i;
    if (match < 0) return 0;
    int cand = LISTEN_FDS_START + (int)match;
    int rc = usable_listener(cand);
    if (rc < 0) return rc;
    *fd = cand;
    return 1;
}

int lsock__plat_unlink_if_same(const char *path, uint64_t dev, uint64_t ino)
{
    struct stat st;
    if (lstat(path, &st) < 0) return -errno;
    if ((uint64_t)st.st_dev != dev || (uint64_t)st.st_ino != ino) return -EEXIST;
    return unlink(path) == 0 ? 0 : -errno;
}

/* Socket files only: Qt removes whatever is at the name, lsock leaves a regular file, a FIFO,
 * a directory or a symlink (even one to a socket) alone. */
int lsock__plat_remove(const char *path)
{
    struct stat st;
    if (lstat(path, &st) < 0) return errno == ENOENT ? 0 : -errno;
    if (!S_ISSOCK(st.st_mode)) return -ENOTSOCK;
    int rc = lsock__plat_unlink_if_same(path, (uint64_t)st.st_dev, (uint64_t)st.st_ino);
    return rc == -ENOENT ? 0 : rc;
}

int lsock__plat_file_info(const char *path, lsock__file_info *out)
{
    struct stat st;
    memset(out, 0, sizeof *out);
    if (lstat(path, &st) < 0) return errno == ENOENT ? 0 : -errno;
    out->exists = 1;
    out->is_socket = S_ISSOCK(st.st_mode) != 0;
    out->ours = st.st_uid == geteuid();
    out->dev = (uint64_t)st.st_dev;
    out->ino = (uint64_t)st.st_ino;
    return 0;
}

/*
 * The reclaim lock of a name's directory: flock(LOCK_EX) on a descriptor of the directory
 * itself, so no lock file is left behind, and a process that dies holding it releases it.
 * Taken without blocking and retried every 2 ms for up to wait_ms, so a lock someone keeps
 * (another program may flock the directory) costs a bounded wait, not a hang.
 */
int lsock__plat_name_lock(const char *path, int wait_ms)
{
    const char *slash = strrchr(path, '/');
    char *dir = slash == path ? strdup("/")
                : slash       ? strndup(path, (size_t)(slash - path))
                              : strdup(".");
    if (!dir) return -ENOMEM;
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    int e = errno;
    free(dir);
    if (fd < 0) return -e;
    uint64_t deadline = lsock__now_ms() + (uint64_t)(wait_ms < 0 ? 0 : wait_ms);
    for (;;) {
        if (flock(fd, LOCK_EX | LOCK_NB) == 0) return fd;
        e = errno;
        if (e == EINTR) continue;
        if (e != EWOULDBLOCK || lsock__now_ms() >= deadline) break;
        lsock__plat_sleep_ms(2);
    }
    close(fd);
    return -e;
}

void lsock__plat_name_unlock(int lock)
{
    if (lock < 0) return;
    /* Unlocked first: a flock belongs to the open file, which a child forked meanwhile (by
     * another thread) shares until it exits; closing our descriptor alone would leave the
     * directory locked for that long. */
    flock(lock, LOCK_UN);
    close(lock);
}

/* The access options of an abstract server, which has no file mode to apply them. */
int lsock__plat_peer_allowed(int fd, unsigned access)
{
    lsock_credentials cr = {-1, -1, -1};
    if (lsock__plat_peer_credentials(fd, &cr) < 0) return 0;
    if ((access & LSOCK_USER_ACCESS) && cr.uid == (int64_t)geteuid()) return 1;
    if ((access & LSOCK_GROUP_ACCESS) && cr.gid == (int64_t)getegid()) return 1;
    return (access & LSOCK_OTHER_ACCESS) != 0;
}

int lsock__plat_has_abstract(void)
{
    return 1;
}

int64_t lsock__plat_process_id(void)
{
    return (int64_t)getpid();
}

void lsock__plat_session_id(char *buf, size_t size)
{
    const char *x = getenv("XDG_SESSION_ID");
    size_t n = x ? strlen(x) : 0;
    int ok = n >= 1 && n <= 64 && n < size;
    for (size_t i = 0; ok && i < n; i++)
        ok = (x[i] >= 'a' && x[i] <= 'z') || (x[i] >= 'A' && x[i] <= 'Z') ||
             (x[i] >= '0' && x[i] <= '9') || x[i] == '_' || x[i] == '-';
    if (ok)
        memcpy(buf, x, n + 1);
    else
        snprintf(buf, size, "sid-%ld", (long)getsid(0));
}

int lsock__plat_local_name(int fd, int peer, char **out, int *abstract)
{
    struct sockaddr_un sa;
    socklen_t len = sizeof sa;
    size_t off = offsetof(struct sockaddr_un, sun_path);
    memset(&sa, 0, sizeof sa);
    *out = NULL;
    *abstract = 0;
    if (!peer || getpeername(fd, (struct sockaddr *)&sa, &len) < 0 || len <= off) {
        len = sizeof sa;
        memset(&sa, 0, sizeof sa);
        if (getsockname(fd, (struct sockaddr *)&sa, &len) < 0) len = 0;
    }
    size_t n = len > off ? len - off : 0;
    const char *p = sa.sun_path;
    if (n > 0 && p[0] == '\0') {
        *abstract = 1;
        p++;
        n--;
    } else {
        n = strnlen(p, n);
    }
    char *copy = malloc(n + 1);
    if (!copy) return -ENOMEM;
    memcpy(copy, p, n);
    copy[n] = '\0';
    *out = copy;
    return 0;
}

int lsock__plat_wakeup_open(int *rfd, int *wfd)
{
#ifdef __linux__
    int fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (fd < 0) return -errno;
    *rfd = *wfd = fd;
    return 0;
#else
    int p[2];
    if (pipe(p) < 0) return -errno;
    if (set_flags(p[0]) < 0 || set_flags(p[1]) < 0) {
        close(p[0]);
        close(p[1]);
        return -EIO;
    }
    *rfd = p[0];
    *wfd = p[1];
    return 0;
#endif
}

void lsock__plat_wakeup_signal(int wfd)
{
#ifdef __linux__
    uint64_t one = 1;
    while (write(wfd, &one, sizeof one) < 0 && errno == EINTR) {
    }
#else
    char c = 1;
    while (write(wfd, &c, 1) < 0 && errno == EINTR) {
    }
#endif
}

void lsock__plat_wakeup_drain(int rfd)
{
    char buf[64];
    for (;;) {
        ssize_t r = read(rfd, buf, sizeof buf);
        if (r > 0 && (size_t)r == sizeof buf) continue;
        if (r < 0 && errno == EINTR) continue;
        break;
    }
}
