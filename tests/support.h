/*
 * Helpers shared by the suites, defined in support.c (part of lsock_testlib): a recorder of
 * callbacks in order, a connected pair, raw peers and listeners, child processes and pipes
 * to them, byte patterns, running a piece of a test as an unprivileged user, and for the Qt
 * conformance and interop
 * suites the recorder's Qt-token log and qt_peer's test pattern with its checksum. The loop
 * helpers are in loop_util.h, included here.
 *
 * The raw peers, child processes and pipes between them have a Unix and a Windows version
 * behind each declaration (AF_UNIX sockets and fork(); named pipes and CreateProcess), so that
 * a test body is the same on both. What only Unix has (uids, socket files, stale names, raw
 * listening descriptors) comes on Windows from win_posix.h, whose stand-ins fail a test that
 * reaches them: such a test skips on Windows first, saying which platform difference it meets.
 */
#ifndef LSOCK_TEST_SUPPORT_H
#define LSOCK_TEST_SUPPORT_H

#include "test.h"
#include "lsock.h"

#ifndef _WIN32
#include <sys/types.h>
#endif

#include <fcntl.h>
#ifndef _WIN32
#include <poll.h>
#endif
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
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
/* The same with options for the server and the client (lsock_server_set_socket_options,
 * lsock_socket_set_options). */
void pair_open_with(pair *p, lsock_loop *loop, unsigned options);
void pair_close(pair *p);

/* ---- raw peers: connection ends a test drives itself, without lsock ---------------------- */

/* A raw end: on Unix an AF_UNIX stream socket (a descriptor), on Windows a named pipe HANDLE.
 * The helpers below take the same calls on both, so that a test body is the same on both. */
#ifdef _WIN32
typedef intptr_t raw_fd;
#else
typedef int raw_fd;
#endif
#define RAW_NONE ((raw_fd)-1)

/* A raw server on a name (resolved as lsock resolves it, path_of()): a listening AF_UNIX
 * socket with the given backlog; on Windows a pipe instance waiting for a client, replaced by
 * a fresh one at every raw_accept(). */
typedef struct raw_server raw_server;
raw_server *raw_listen(const char *name, int backlog);
/* The next client's connection (waits up to 5 s); the caller closes it with raw_close(). */
raw_fd raw_accept(raw_server *l);
/* The listening descriptor; on Windows the HANDLE of the waiting instance. */
raw_fd raw_server_fd(const raw_server *l);
/* Closes the listener (and removes its socket file). NULL: nothing. */
void raw_server_close(raw_server *l);

/* Closes a raw end: close(), CloseHandle(). RAW_NONE: nothing. */
void raw_close(raw_fd fd);
/* Writes all n bytes, waiting while the connection is full. */
void write_all_raw(raw_fd fd, const void *buf, size_t n);
/* Reads what fd has now without waiting: the bytes read (at most n), 0 at the end of the
 * stream (or a reset), -1 when nothing has arrived yet. */
int64_t raw_read(raw_fd fd, void *buf, size_t n);
/* Waits up to ms for data or the end of the stream on fd; false after ms. */
bool raw_wait_readable(raw_fd fd, int ms);
/* Reads what the raw end has now (without waiting); checks the pattern. Returns -1 at EOF. */
int drain_raw(raw_fd fd, size_t *total);
/* Reads pattern bytes (drain_raw) until *total is want, waiting up to ms in all; fails the
 * test on the end of the stream, on more bytes than want, or when the time is up. */
void drain_raw_until(raw_fd fd, size_t *total, size_t want, int ms);
/* Whether fd is an open descriptor (an open HANDLE on Windows). */
bool raw_is_open(intptr_t fd);
/* Whether a child process would inherit fd: not close-on-exec on Unix, HANDLE_FLAG_INHERIT on
 * Windows (a child inherits what the flag marks; exec does not exist there). */
bool raw_is_inherited(intptr_t fd);
/* Two connected raw ends, both in the form lsock_socket_set_descriptor() adopts: a socketpair
 * on Unix, the two ends of a fresh named pipe opened with FILE_FLAG_OVERLAPPED on Windows. */
void raw_socketpair(raw_fd sv[2]);

/* A raw server whose backlog is full: a connect to it stays CONNECTING and retries. On Unix a
 * listener with backlog 0 filled with raw clients; on Windows the one instance of a pipe,
 * which a raw client holds (every connect meets ERROR_PIPE_BUSY). */
typedef struct fullsrv {
    char name[128];
    raw_fd lfd; /* the listener; on Windows the busy instance */
    raw_fd fds[512];
    int n;
} fullsrv;

void fullsrv_open(fullsrv *f, const char *tag);
/* Makes room for one more connection: accepts one queued raw client (Unix), or puts a fresh
 * instance in place (Windows). Returns that end; the caller closes it with raw_close(). */
raw_fd fullsrv_accept(fullsrv *f);
void fullsrv_close(fullsrv *f);

/* A client socket connected to a raw server, and the raw accepted end (non-blocking on Unix;
 * the raw helpers never wait on it unless asked to). */
typedef struct rawpair {
    char name[128];
    raw_server *l;
    raw_fd pfd;
    lsock_socket *s;
} rawpair;

void rawpair_open(rawpair *p, lsock_loop *loop);
void rawpair_close(rawpair *p);

/* A writer thread: writes n bytes of data to fd, which it owns from now on, then closes it
 * (the end a test hands over stays with the writer until the last byte is taken). */
typedef struct raw_writer raw_writer;
raw_writer *raw_write_and_close_async(raw_fd fd, const void *data, size_t n);
/* Waits for the writer; true if it wrote every byte. Frees it. */
bool raw_writer_join(raw_writer *w);

/* Unix only, for what only Unix has: a raw listening socket bound to path; a socket file on
 * path that nobody listens on; a non-blocking descriptor. On Windows they reach the stand-ins
 * of win_posix.h (a test that needs them skips there first). */
int raw_listener(const char *path, int backlog);
/* A socket bound to path with plain bind(2), not listening. */
int raw_bound(const char *path);
void make_stale(const char *path);
void set_nonblock(int fd);

/* ---- child processes --------------------------------------------------------------------- */

/* A child process that runs the CHILD_MAIN(fn) of this test executable with arg and exits
 * with its return value: fork() on Unix (the child dies with its parent on Linux), on Windows
 * this executable started again (CreateProcess, inheriting the handles marked inheritable;
 * a job object ends the child with its parent). */
typedef struct child {
    int64_t pid;
    intptr_t handle; /* Windows: the process HANDLE */
    int status;      /* once ended: what child_wait() returned */
    bool ended;
} child;

/* What child_wait() returns for a child that child_kill() (or SIGKILL) ended, and for one that
 * is still running when the wait times out. A normal exit gives its status (0 to 255). */
#define CHILD_KILLED  (-9)
#define CHILD_RUNNING (-1000)

void child_start(child *c, const char *fn, const char *arg);
/* Waits up to ms (-1: no limit) for the child to end: its exit status, CHILD_KILLED, -N for
 * another signal N, or CHILD_RUNNING after ms. */
int child_wait(child *c, int ms);
/* Ends the child at once: SIGKILL, TerminateProcess. */
void child_kill(child *c);
/* Lowers the calling process's priority (nice 10; BELOW_NORMAL_PRIORITY_CLASS). */
void child_lower_priority(void);
/* Blocks the calling process until it is killed. */
void child_idle_forever(void);
#ifndef _WIN32
/* fork() for a test that runs code in the child itself: the child dies with its parent
 * (Linux), exits 99 if the parent is already gone, and ends after 60 s at most. */
pid_t fork_linked_child(void);
/* In a child: becomes uid and gid 65534 (nobody) with no groups, or exits 98. */
void become_nobody(void);
#endif

/* A pipe between a test and its children: fds[0] reads, fds[1] writes; children inherit both
 * ends (fork, or inheritable HANDLEs on Windows), so a child gets an end by its number
 * ("%lld" of the raw_fd in its argument). Closed with raw_close(). */
void proc_pipe(raw_fd fds[2]);
bool proc_write_byte(raw_fd fd, char c);
/* The next byte; -1 at the end of the stream (every write end closed); -2 after ms (-1: no
 * limit). */
int proc_read_byte(raw_fd fd, int ms);

/* ---- byte patterns --------------------------------------------------------------------- */

/* The pattern of the lsock-only suites: byte i is (i * 7) % 251. */
unsigned char pattern_byte(size_t i);
/* n bytes of the pattern (malloc'd). */
unsigned char *pattern_new(size_t n);

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

/* ---- the platform ------------------------------------------------------------------------ */

/* Whether the test runs under valgrind (its preload library is in LD_PRELOAD). */
bool under_valgrind(void);
/* The version of Wine when the test runs under Wine ("8.0"), else NULL (always on Unix). */
const char *wine_version(void);
/* Sleeps ms milliseconds: for pacing only (a child writing with pauses), never to wait for
 * an event (wait for the event, with a deadline). */
void sleep_ms(int ms);
/* The process's resident memory in KiB (the working set on Windows); -1 where unknown. */
long process_rss_kib(void);

/* ---- files and users ------------------------------------------------------------------- */

/* Whether path exists: a file (lstat(), a socket file among them); on Windows, for a
 * \\.\pipe\ path, whether a pipe of that name exists (a server holds it). */
bool file_exists(const char *path);
/* The access mode of the server listening on name (resolved with path_of()), as the
 * LSOCK_*_ACCESS options set it: the socket file's mode & 0777 on Unix; on Windows the pipe's
 * DACL read as a mode: 0700 for an ACE that gives the user full access, 0070 for the user's
 * primary group, 0007 for Everyone (reading it opens the pipe: the server gets a connection
 * that ends at once). */
unsigned access_mode_of(const char *name);
/* A fresh directory for TMPDIR; returns its path (static storage). */
const char *make_tmpdir(void);
/* Runs fn as an unprivileged user: directly unless root; as root in a child that drops to
 * nobody (skips when that is impossible). */
void run_unprivileged(void (*fn)(void));

/* Whether a library counter (lsock__test_direct_reads, lsock__test_announced) moved since
 * *mark, moving the mark. On Windows always true: reads there never go straight from a kernel
 * into the caller's buffer (they copy from lsock's own pipe read-ahead, see
 * lsock__plat_bytes_in_kernel), so those counters stay still. */
int counted_since(atomic_ulong *counter, unsigned long *mark);

#endif
