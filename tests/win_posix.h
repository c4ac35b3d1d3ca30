/*
 * Windows only: the Unix calls that the shared test sources use beside lsock (raw AF_UNIX
 * sockets, poll, fork, fcntl, uids, socket files, TMPDIR), declared so that the same sources
 * compile for Windows. A test that needs a raw peer, a child process or a descriptor's flags
 * uses the portable helpers of support.h instead; what is left here exists on Unix only, and
 * a test that needs it skips on Windows first, naming the platform difference. Reaching one of
 * these stand-ins therefore fails the test: it would otherwise pass or skip for no reason.
 */
#ifndef LSOCK_TEST_WIN_POSIX_H
#define LSOCK_TEST_WIN_POSIX_H

#include "test.h"

#include <dirent.h>
#include <fcntl.h>
#include <process.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <unistd.h>

#define WIN_UNIX_ONLY_(what, why)                                                                  \
    FAIL_("%s is Unix-only (%s): the test must skip on Windows before it", what, why)
#define WIN_RAW_ "lsock uses named pipes on Windows, there are no raw AF_UNIX sockets"

typedef int socklen_t;
struct sockaddr {
    unsigned short sa_family;
    char sa_data[14];
};
struct sockaddr_un {
    unsigned short sun_family;
    char sun_path[108];
};
struct pollfd {
    int fd;
    short events, revents;
};
#define AF_UNIX       1
#define SOCK_STREAM   1
#define SOCK_DGRAM    2
#define SOCK_NONBLOCK 0x800
#define SOCK_CLOEXEC  0x80000
#define POLLIN        1
#define POLLOUT       4
#define F_GETFD       1
#define F_GETFL       3
#define F_SETFL       4
#define O_NONBLOCK    0x800
#define FD_CLOEXEC    1
#ifndef O_CLOEXEC
#define O_CLOEXEC 0
#endif
#define WNOHANG        1
#define WIFEXITED(s)   1
#define WEXITSTATUS(s) (s)
#define S_ISSOCK(m)    0

#define getpid() ((int)_getpid())

static inline int win_socket(int d, int t, int p)
{
    WIN_UNIX_ONLY_("socket()", WIN_RAW_);
}
static inline int win_socketpair(int d, int t, int p, int sv[2])
{
    WIN_UNIX_ONLY_("socketpair()", WIN_RAW_);
}
static inline int win_bind(int fd, const void *a, socklen_t n)
{
    WIN_UNIX_ONLY_("bind()", WIN_RAW_);
}
static inline int win_connect(int fd, const void *a, socklen_t n)
{
    WIN_UNIX_ONLY_("connect()", WIN_RAW_);
}
static inline int win_listen(int fd, int n)
{
    WIN_UNIX_ONLY_("listen()", WIN_RAW_);
}
static inline int win_accept4(int fd, void *a, void *n, int f)
{
    WIN_UNIX_ONLY_("accept4()", WIN_RAW_);
}
static inline int win_poll(struct pollfd *p, unsigned n, int t)
{
    WIN_UNIX_ONLY_("poll()", "Windows handles are not descriptors that poll() takes");
}
static inline int win_fork(void)
{
    WIN_UNIX_ONLY_("fork()", "Windows has no fork; these tests fork their peers");
}
static inline int win_waitpid(int pid, int *st, int f)
{
    WIN_UNIX_ONLY_("waitpid()", "Windows has no fork; these tests fork their peers");
}
static inline int win_fcntl(int fd, int cmd, ...)
{
    WIN_UNIX_ONLY_("fcntl()", "descriptor flags (O_NONBLOCK, FD_CLOEXEC) are Unix-only");
}
static inline int win_pipe(int fds[2])
{
    WIN_UNIX_ONLY_("pipe()", "a test of non-socket descriptors");
}
static inline int win_ids(void)
{
    WIN_UNIX_ONLY_("uids and gids", "Windows identifies users by SID");
}
static inline char *win_mkdtemp(char *t)
{
    WIN_UNIX_ONLY_("mkdtemp() and TMPDIR", "a pipe name is not a path under TMPDIR");
}
static inline int win_lstat(const char *p, struct stat *st)
{
    WIN_UNIX_ONLY_("lstat() of a socket file", "a named pipe is no file in a directory");
}
static inline int win_setenv(const char *n, const char *v, int o)
{
    WIN_UNIX_ONLY_("setenv() of TMPDIR", "a pipe name is not a path under TMPDIR");
}
static inline int win_unsetenv(const char *n)
{
    WIN_UNIX_ONLY_("unsetenv() of TMPDIR", "a pipe name is not a path under TMPDIR");
}

#define socket     win_socket
#define socketpair win_socketpair
#define bind       win_bind
#define connect    win_connect
#define listen     win_listen
#define accept4    win_accept4
#define poll       win_poll
#define fork       win_fork
#define waitpid    win_waitpid
#define fcntl      win_fcntl
#define pipe       win_pipe
#define setuid(x)  win_ids()
#define setgid(x)  win_ids()
#define geteuid()  win_ids()
#define getuid()   win_ids()
#define getgid()   win_ids()
#define mkdtemp    win_mkdtemp
#define lstat      win_lstat
#define setenv     win_setenv
#define unsetenv   win_unsetenv

#endif
