/*
 * Helpers shared by the suites, defined in support.c (part of lsock_testlib): a recorder of
 * callbacks in order, a connected pair, raw AF_UNIX peers and listeners, byte patterns,
 * running a piece of a test as an unprivileged user, and for the Qt conformance and interop
 * suites the recorder's Qt-token log and qt_peer's test pattern with its checksum. The loop
 * helpers are in loop_util.h, included here.
 *
 * On Windows the raw AF_UNIX helpers, fork, uids and socket files come from win_posix.h: a
 * test that reaches one of them skips.
 */
#ifndef LSOCK_TEST_SUPPORT_H
#define LSOCK_TEST_SUPPORT_H

#include "test.h"
#include "lsock.h"

#include <fcntl.h>
#ifndef _WIN32
#include <poll.h>
#endif
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#ifdef _WIN32
#include "win_posix.h" /* the Unix-only calls: a test that reaches one skips */
#else
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#endif
#include <unistd.h>

#include "loop_util.h"

/* ---- names ----------------------------------------------------------------------------- */

/* The path the library resolves a name to ($TMPDIR or /tmp; \\.\pipe\NAME on Windows). Static
 * storage rotated over 8 slots. */
const char *path_of(const char *name);
bool starts_with(const char *s, const char *prefix);

/* ---- the callback recorder ------------------------------------------------------------- */

/* Records every callback of a socket: counts, what the socket looked like in some of them,
 * and a log of the callbacks in order.
 *
 * rec_init: the log has "connected", "disconnected", "read_channel_finished", "error:NAME",
 * "state:STATE" and "about_to_close"; with log_io also "ready_read" and "bytes_written".
 * rec_init_qt: the log uses the tokens of tests/qt/qt_peer.cpp, which leaves out connected,
 * ready_read and bytes_written (their number depends on timing) and names the state in
 * "disconnected(STATE)" and "read_channel_finished(STATE)".
 *
 * free_in names a callback ("connected", "ready_read", ...) in which the recorder frees the
 * socket after recording it, once. on_ready_read, when set, is called from every ready_read. */
typedef struct rec {
    char log[4096];
    int connected, disconnected, errors, ready_read, about_to_close, rcf, state_changes;
    int bytes_written_calls;
    lsock_error last_error;
    lsock_state state_in_rcf, state_in_disconnected;
    int64_t avail_in_about_to_close, avail_in_rcf;
    bool open_in_about_to_close;
    int64_t written;
    int64_t max_available;
    int in_write, bw_inside_write;
    int depth, max_depth;
    bool log_io; /* also log ready_read and bytes_written */
    bool qt_log; /* the log in qt_peer's tokens (rec_init_qt) */
    const char *free_in;
    bool freed;
    void (*on_ready_read)(lsock_socket *s, struct rec *r);
    void *user;
} rec;

void rec_init(rec *r);
void rec_init_qt(rec *r);
/* Appends a token to the log. */
void rec_add(rec *r, const char *ev);

/* The recorder's callbacks (user data: the rec). */
void on_connected(lsock_socket *s, void *u);
void on_disconnected(lsock_socket *s, void *u);
void on_error(lsock_socket *s, lsock_error err, void *u);
void on_state(lsock_socket *s, lsock_state st, void *u);
void on_ready_read(lsock_socket *s, void *u);
void on_bytes_written(lsock_socket *s, int64_t n, void *u);
void on_about_to_close(lsock_socket *s, void *u);
void on_rcf(lsock_socket *s, void *u);
extern const lsock_socket_callbacks rec_cbs;

/* ---- connected sockets ----------------------------------------------------------------- */

/* A server, a client connected to it and the server's end of that connection. */
typedef struct pair {
    lsock_server *srv;
    lsock_socket *client;
    lsock_socket *peer;
    char name[128];
} pair;

/* Opens the pair on loop (NULL: blocking, without a loop). */
void pair_open(pair *p, lsock_loop *loop);
void pair_close(pair *p);

/* ---- raw AF_UNIX sockets --------------------------------------------------------------- */

/* A raw listening socket on path. */
int raw_listener(const char *path, int backlog);
/* Leaves a socket file on path that nobody listens on. */
void make_stale(const char *path);
/* Accepts one connection on a raw listener (waits up to 5 s). */
int raw_accept(int lfd);
void set_nonblock(int fd);
/* Fills the backlog of a raw listener; returns the number of raw clients in *fds. */
int fill_backlog(const char *path, int *fds, int max);

/* A raw listener with backlog 0 whose backlog is full: a connect to it stays CONNECTING. */
typedef struct fullsrv {
    char name[128];
    int lfd;
    int fds[512];
    int n;
} fullsrv;

void fullsrv_open(fullsrv *f, const char *tag);
void fullsrv_close(fullsrv *f);

/* A client socket connected to a raw listener, and the raw accepted end (non-blocking). */
typedef struct rawpair {
    char name[128];
    int lfd, pfd;
    lsock_socket *s;
} rawpair;

void rawpair_open(rawpair *p, lsock_loop *loop);
void rawpair_close(rawpair *p);

/* Writes all n bytes to a raw fd, waiting while it is full. */
void write_all_raw(int fd, const void *buf, size_t n);

/* ---- byte patterns --------------------------------------------------------------------- */

/* The pattern of the lsock-only suites: byte i is (i * 7) % 251. */
unsigned char pattern_byte(size_t i);
/* n bytes of the pattern (malloc'd). */
unsigned char *pattern_new(size_t n);
/* Reads what the raw fd has now (non-blocking); checks the pattern. Returns -1 at EOF. */
int drain_raw(int fd, size_t *total);

/* The pattern of the Qt suites, as tests/qt/qt_peer.cpp's: byte i is
 * ((uint32)i * 2654435761) >> 24. */
unsigned char qt_pattern_byte(uint64_t i);
/* n bytes of the Qt pattern (malloc'd). */
unsigned char *qt_pattern_new(size_t n);

/* FNV-1a 64, the checksum qt_peer reports: h = fnv_add(FNV_INIT, data, n). */
#define FNV_INIT 14695981039346656037ull
uint64_t fnv_add(uint64_t h, const void *data, size_t n);
/* The FNV-1a 64 of the first n bytes of the Qt pattern. */
uint64_t qt_pattern_fnv(size_t n);

/* ---- files and users ------------------------------------------------------------------- */

bool file_exists(const char *path);
/* A fresh directory for TMPDIR; returns its path (static storage). */
const char *make_tmpdir(void);
/* Runs fn as an unprivileged user: directly unless root; as root in a child that drops to
 * nobody (skips when that is impossible). */
void run_unprivileged(void (*fn)(void));

#endif
