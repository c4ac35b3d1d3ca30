/*
 * lsock: socat/nc for local sockets and named pipes, with Qt's server names.
 *
 *   lsock listen NAME [--echo] [--message] [--abstract] [--access MODE] [--keep]
 *   lsock connect NAME [-q SECS] [--message] [--abstract]
 *   lsock send NAME [FILE] [--progress | --quiet] [--abstract]
 *   lsock probe NAME [--abstract]
 *   lsock rm NAME
 *   lsock ls [--all] [DIR]
 *
 * Every command also takes --same-user and --per-user (LSOCK_SAME_USER_ONLY, LSOCK_PER_USER).
 * Exit status: 0 success, 1 runtime error (the message names the command and the reason),
 * 2 usage error; probe: 0 live, 1 stale, 2 absent. The manual is docs/lsock.1.
 */
#include <lsock.h>

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#ifdef _WIN32
#define WIN32_LEAN_AND_MEAN
#include <fcntl.h>
#include <io.h>
#include <windows.h>
#else
#include <dirent.h>
#include <pwd.h>
#include <unistd.h>
#endif

#define CHUNK (256 * 1024)

/* ---- options and errors ------------------------------------------------------------------- */

typedef struct opts {
    const char *cmd, *name, *file;
    unsigned options; /* LSOCK_ABSTRACT_NAMESPACE, SAME_USER_ONLY, PER_USER */
    unsigned access;
    int echo, message, keep, all, quiet, progress, linger_secs;
} opts;

static const char *const usage_text =
    "usage: lsock COMMAND NAME [OPTIONS]\n"
    "  listen NAME [--echo] [--message] [--abstract] [--access user|group|other|world] [--keep]\n"
    "  connect NAME [-q SECS] [--message] [--abstract]\n"
    "  send NAME [FILE] [--progress | --quiet] [--abstract]\n"
    "  probe NAME [--abstract]          prints live, stale or absent (exit 0, 1, 2)\n"
    "  rm NAME                          removes a stale socket file, never a live server's\n"
    "  ls [--all] [DIR]                 lists local servers\n"
    "every command: --same-user, --per-user; lsock --help, lsock COMMAND --help, lsock --version\n";

static int usage(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "lsock: ");
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\n%s", usage_text);
    va_end(ap);
    return 2;
}

/* A runtime error: "lsock CMD: message", exit status 1. */
static int fail(const opts *o, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "lsock %s: ", o->cmd);
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\n");
    va_end(ap);
    return 1;
}

/* The error text of a call without its "lsock_xxx: " prefix. */
static const char *reason(const char *text)
{
    const char *p = strstr(text, ": ");
    return p && strncmp(text, "lsock_", 6) == 0 ? p + 2 : text;
}

static const struct help {
    const char *cmd, *text;
} helps[] = {
    {"listen", "lsock listen NAME [--echo] [--message] [--abstract] [--access MODE] [--keep]\n"
               "  Serves NAME. Writes what the first client sends to stdout and exits when it\n"
               "  disconnects.\n"
               "  --echo         echo every client back, forever (several at once)\n"
               "  --keep         serve clients one after another until interrupted\n"
               "  --message      each received lsock message on its own line\n"
               "  --abstract     the Linux abstract namespace (no file)\n"
               "  --access MODE  user, group, other or world: the socket file's mode\n"},
    {"connect", "lsock connect NAME [-q SECS] [--message] [--abstract]\n"
                "  Copies stdin to the server and the server's bytes to stdout. At the end of\n"
                "  stdin, flushes and exits when the server closes, or SECS seconds later (-q).\n"
                "  --message      each input line is one lsock message; each received message\n"
                "                 is printed on its own line\n"},
    {"send", "lsock send NAME [FILE] [--progress | --quiet] [--abstract]\n"
             "  Sends FILE (or stdin) and exits once all of it is written. A progress bar on\n"
             "  stderr when stderr is a terminal (--progress: always; --quiet: never).\n"},
    {"probe", "lsock probe NAME [--abstract]\n"
              "  Prints live (a server listens; exit 0), stale (a socket file with no server;\n"
              "  exit 1) or absent (exit 2). A live server sees a connection that closes.\n"},
    {"rm", "lsock rm NAME\n"
           "  Removes a stale socket file (exit 0). Refuses a live server's (exit 1) and\n"
           "  never removes anything that is not a socket.\n"},
    {"ls", "lsock ls [--all] [DIR]\n"
           "  Lists local servers: socket files in the temporary directory (or DIR), abstract\n"
           "  sockets (Linux), named pipes (Windows), live or stale, with the listening\n"
           "  process's pid and user where known. --all: also the user's private directories\n"
           "  (LSOCK_PER_USER) and abstract sockets that are not listening.\n"},
};

static int help(const char *cmd)
{
    for (size_t i = 0; i < sizeof helps / sizeof helps[0]; i++)
        if (cmd && !strcmp(cmd, helps[i].cmd)) {
            fputs(helps[i].text, stdout);
            fputs("  --same-user    only a peer of this user (LSOCK_SAME_USER_ONLY)\n"
                  "  --per-user     the name in the user's private directory (LSOCK_PER_USER)\n",
                  stdout);
            return 0;
        }
    fputs(usage_text, stdout);
    return 0;
}

static int parse(int argc, char **argv, opts *o)
{
    memset(o, 0, sizeof *o);
    o->linger_secs = -1;
    if (argc < 2) return usage("no command");
    o->cmd = argv[1];
    if (!strcmp(o->cmd, "--help") || !strcmp(o->cmd, "-h")) return help(NULL), -1;
    if (!strcmp(o->cmd, "--version")) return printf("lsock %s\n", lsock_version()), -1;
    int known = 0;
    for (size_t i = 0; i < sizeof helps / sizeof helps[0]; i++)
        known |= !strcmp(o->cmd, helps[i].cmd);
    if (!known) return usage("unknown command \"%s\"", o->cmd);
    int positional = 0;
    for (int i = 2; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) return help(o->cmd), -1;
        if (!strcmp(a, "--abstract")) {
            o->options |= LSOCK_ABSTRACT_NAMESPACE;
        } else if (!strcmp(a, "--same-user")) {
            o->options |= LSOCK_SAME_USER_ONLY;
        } else if (!strcmp(a, "--per-user")) {
            o->options |= LSOCK_PER_USER;
        } else if (!strcmp(a, "--echo") && !strcmp(o->cmd, "listen")) {
            o->echo = 1;
        } else if (!strcmp(a, "--keep") && !strcmp(o->cmd, "listen")) {
            o->keep = 1;
        } else if (!strcmp(a, "--message") &&
                   (!strcmp(o->cmd, "listen") || !strcmp(o->cmd, "connect"))) {
            o->message = 1;
        } else if (!strcmp(a, "--all") && !strcmp(o->cmd, "ls")) {
            o->all = 1;
        } else if (!strcmp(a, "--quiet") && !strcmp(o->cmd, "send")) {
            o->quiet = 1;
        } else if (!strcmp(a, "--progress") && !strcmp(o->cmd, "send")) {
            o->progress = 1;
        } else if (!strcmp(a, "--access") && !strcmp(o->cmd, "listen")) {
            if (++i == argc) return usage("--access needs user, group, other or world");
            const char *m = argv[i];
            o->access = !strcmp(m, "user")    ? LSOCK_USER_ACCESS
                        : !strcmp(m, "group") ? LSOCK_GROUP_ACCESS
                        : !strcmp(m, "other") ? LSOCK_OTHER_ACCESS
                        : !strcmp(m, "world") ? LSOCK_WORLD_ACCESS
                                              : 0;
            if (!o->access) return usage("--access: \"%s\" is not user, group, other or world", m);
        } else if (!strcmp(a, "-q") && !strcmp(o->cmd, "connect")) {
            char *end = NULL;
            if (++i == argc) return usage("-q needs a number of seconds");
            long v = strtol(argv[i], &end, 10);
            if (!*argv[i] || *end || v < 0 || v > 86400)
                return usage("-q: \"%s\" is not a number of seconds from 0 to 86400", argv[i]);
            o->linger_secs = (int)v;
        } else if (a[0] == '-' && a[1]) {
            return usage("%s: unknown option \"%s\"", o->cmd, a);
        } else if (positional == 0 && strcmp(o->cmd, "ls") != 0) {
            o->name = a;
            positional++;
        } else if ((positional == 1 && !strcmp(o->cmd, "send")) ||
                   (positional == 0 && !strcmp(o->cmd, "ls"))) {
            o->file = a;
            positional++;
        } else {
            return usage("%s: unexpected argument \"%s\"", o->cmd, a);
        }
    }
    if (!o->name && strcmp(o->cmd, "ls") != 0) return usage("%s: NAME is missing", o->cmd);
    if (o->name && !*o->name) return usage("%s: NAME is empty", o->cmd);
    if (o->quiet && o->progress) return usage("send: --progress and --quiet exclude each other");
    if (o->echo && o->keep) return usage("listen: --echo serves forever already; drop --keep");
    return 0;
}

/* ---- probe, rm ------------------------------------------------------------------------------ */

enum { LIVE = 0, STALE = 1, ABSENT = 2 };

/* What is at name: LIVE (a server accepted), STALE (a socket file, no server) or ABSENT; the
 * resolved name into full; the listener's credentials when live (may be NULL). */
static int probe_name(const opts *o, const char *name, char *full, size_t size,
                      lsock_credentials *cr)
{
    lsock_socket *s = lsock_socket_new(NULL);
    if (!s) return ABSENT;
    lsock_socket_set_options(s, o->options & ~(unsigned)LSOCK_SAME_USER_ONLY);
    lsock_socket_set_connect_timeout(s, 1000);
    /* The resolved name first: a failed connect clears the names (as Qt). */
    lsock_socket_set_server_name(s, name);
    snprintf(full, size, "%s", lsock_socket_full_server_name(s));
    int live = lsock_socket_connect(s, NULL, LSOCK_READ_WRITE);
    lsock_error e = lsock_socket_error(s);
    if (live && cr && !lsock_socket_peer_credentials(s, cr)) cr->pid = cr->uid = -1;
    lsock_socket_free(s);
    if (live) return LIVE;
    if (e == LSOCK_ERR_CONNECTION_REFUSED) return STALE;
#ifndef _WIN32
    struct stat st;
    if (!(o->options & LSOCK_ABSTRACT_NAMESPACE) && lstat(full, &st) == 0 && S_ISSOCK(st.st_mode))
        return STALE;
#endif
    return e == LSOCK_ERR_SOCKET_TIMEOUT ? LIVE : ABSENT; /* a full backlog: someone listens */
}

static int cmd_probe(const opts *o)
{
    char full[512];
    int st = probe_name(o, o->name, full, sizeof full, NULL);
    puts(st == LIVE ? "live" : st == STALE ? "stale" : "absent");
    return st;
}

static int cmd_rm(const opts *o)
{
    if (o->options & LSOCK_ABSTRACT_NAMESPACE)
        return fail(o, "an abstract name has no file to remove");
    char full[512];
    int st = probe_name(o, o->name, full, sizeof full, NULL);
    if (st == LIVE) return fail(o, "%s: a server is listening there; not removed", full);
#ifndef _WIN32
    struct stat sb;
    if (lstat(full, &sb) == 0 && !S_ISSOCK(sb.st_mode))
        return fail(o, "%s: not a socket; left alone", full);
    if (st == ABSENT) return fail(o, "%s: nothing there", full);
    if (unlink(full) != 0) return fail(o, "%s: %s", full, strerror(errno));
    printf("removed %s\n", full);
    return 0;
#else
    return fail(o, "%s: named pipes go with their server; nothing to remove", full);
#endif
}

/* ---- ls ---------------------------------------------------------------------------------------
 */

#ifndef _WIN32
static const char *user_name(int64_t uid, char *buf, size_t size)
{
#ifndef _WIN32
    struct passwd *pw = uid >= 0 ? getpwuid((uid_t)uid) : NULL;
    if (pw) return pw->pw_name;
#endif
    if (uid < 0) return "-";
    snprintf(buf, size, "%lld", (long long)uid);
    return buf;
}

static void ls_entry(const opts *o, const char *path, int abstract, int64_t owner_uid)
{
    opts po = *o;
    po.options = abstract ? LSOCK_ABSTRACT_NAMESPACE : 0;
    char full[512], ub[32], pid[32] = "-";
    lsock_credentials cr = {-1, -1, -1};
    int st = probe_name(&po, path, full, sizeof full, &cr);
    if (st == ABSENT) return;
    if (st == LIVE && cr.pid >= 0) snprintf(pid, sizeof pid, "%lld", (long long)cr.pid);
    int64_t uid = st == LIVE && cr.uid >= 0 ? cr.uid : owner_uid;
    printf("%-5s  %7s  %-10s  %s%s\n", st == LIVE ? "live" : "stale", pid,
           user_name(uid, ub, sizeof ub), abstract ? "@" : "", path);
}

static void ls_dir(const opts *o, const char *dir)
{
    DIR *d = opendir(dir);
    if (!d) return;
    struct dirent *e;
    char path[4096];
    while ((e = readdir(d)) != NULL) {
        snprintf(path, sizeof path, "%s%s%s", dir, dir[strlen(dir) - 1] == '/' ? "" : "/",
                 e->d_name);
        struct stat st;
        if (lstat(path, &st) == 0 && S_ISSOCK(st.st_mode)) ls_entry(o, path, 0, st.st_uid);
    }
    closedir(d);
}

/* Abstract sockets from /proc/net/unix: listening ones (or all with --all). */
static void ls_abstract(const opts *o)
{
    FILE *f = fopen("/proc/net/unix", "r");
    if (!f) return;
    char line[4096];
    if (!fgets(line, sizeof line, f)) {
        fclose(f);
        return;
    }
    while (fgets(line, sizeof line, f)) {
        unsigned long flags = 0, state = 0;
        char path[4096] = "";
        /* Num RefCount Protocol Flags Type St Inode Path */
        if (sscanf(line, "%*s %*s %*s %lx %*s %lx %*s %4095s", &flags, &state, path) < 3) continue;
        if (path[0] != '@') continue;
        int listening = (flags & 0x10000) != 0; /* __SO_ACCEPTCON */
        if (!listening && !o->all) continue;
        path[strcspn(path, "\n")] = '\0';
        ls_entry(o, path + 1, 1, -1);
    }
    fclose(f);
}
#endif

static int cmd_ls(const opts *o)
{
    printf("%-5s  %7s  %-10s  %s\n", "STATE", "PID", "USER", "NAME");
#ifdef _WIN32
    WIN32_FIND_DATAA fd;
    HANDLE h = FindFirstFileA("\\\\.\\pipe\\*", &fd);
    if (h == INVALID_HANDLE_VALUE) return fail(o, "cannot list \\\\.\\pipe\\");
    do {
        char name[600];
        snprintf(name, sizeof name, "\\\\.\\pipe\\%s", fd.cFileName);
        printf("%-5s  %7s  %-10s  %s\n", "live", "-", "-", name);
    } while (FindNextFileA(h, &fd));
    FindClose(h);
#else
    const char *tmp = getenv("TMPDIR");
    ls_dir(o, o->file ? o->file : tmp && *tmp ? tmp : "/tmp");
    if (o->all && !o->file) {
        const char *xdg = getenv("XDG_RUNTIME_DIR");
        if (xdg && *xdg) ls_dir(o, xdg);
        char priv[4096];
        snprintf(priv, sizeof priv, "%s/lsock-%lu", tmp && *tmp ? tmp : "/tmp",
                 (unsigned long)geteuid());
        ls_dir(o, priv);
    }
    if (!o->file) ls_abstract(o);
#endif
    return 0;
}

/* ---- send ------------------------------------------------------------------------------------ */

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static void human(char *buf, size_t size, double bytes)
{
    const char *units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
    int u = 0;
    while (bytes >= 1024 && u < 4) {
        bytes /= 1024;
        u++;
    }
    snprintf(buf, size, u ? "%.1f %s" : "%.0f %s", bytes, units[u]);
}

/* "\r[#####     ]  42%  12.0 MiB of 28.6 MiB  512.3 MiB/s  ETA 0:03" (no size: no bar). */
static void progress(int64_t done, int64_t total, double start, int last)
{
    double t = now_s() - start, rate = t > 0 ? (double)done / t : 0;
    char d[32], tot[32], r[32];
    human(d, sizeof d, (double)done);
    human(r, sizeof r, rate);
    if (total > 0) {
        int pct = (int)(done * 100 / total), width = 20, fill = pct * width / 100;
        char bar[32];
        for (int i = 0; i < width; i++)
            bar[i] = i < fill ? '#' : ' ';
        bar[width] = '\0';
        human(tot, sizeof tot, (double)total);
        long eta = rate > 0 ? (long)((double)(total - done) / rate) : 0;
        fprintf(stderr, "\r[%s] %3d%%  %s of %s  %s/s  ETA %ld:%02ld", bar, pct, d, tot, r,
                eta / 60, eta % 60);
    } else {
        fprintf(stderr, "\r%s  %s/s", d, r);
    }
    if (last) fprintf(stderr, "\n");
    fflush(stderr);
}

static int stderr_is_tty(void)
{
#ifdef _WIN32
    return _isatty(_fileno(stderr));
#else
    return isatty(2);
#endif
}

static int cmd_send(const opts *o)
{
    FILE *in = stdin;
    int64_t total = -1;
    if (o->file && strcmp(o->file, "-") != 0) {
        in = fopen(o->file, "rb");
        if (!in) return fail(o, "%s: %s", o->file, strerror(errno));
        struct stat st;
        if (stat(o->file, &st) == 0 && S_ISREG(st.st_mode)) total = (int64_t)st.st_size;
    }
    int show = o->progress || (!o->quiet && stderr_is_tty());
    lsock_socket *s = lsock_socket_new(NULL);
    lsock_socket_set_options(s, o->options);
    if (!lsock_socket_connect(s, o->name, LSOCK_WRITE_ONLY) ||
        (lsock_socket_state(s) == LSOCK_CONNECTING && !lsock_socket_wait_for_connected(s, -1)))
        return fail(o, "%s", reason(lsock_socket_error_string(s)));
    char *buf = malloc(CHUNK);
    if (!buf) return fail(o, "out of memory");
    int64_t sent = 0;
    double start = now_s(), shown = 0;
    size_t n;
    int rc = 0;
    while ((n = fread(buf, 1, CHUNK, in)) > 0) {
        if (lsock_socket_write(s, buf, (int64_t)n) != (int64_t)n) {
            rc = fail(o, "%s", reason(lsock_socket_error_string(s)));
            break;
        }
        while (lsock_socket_bytes_to_write(s) > 4 * CHUNK)
            if (!lsock_socket_wait_for_bytes_written(s, -1)) {
                rc = fail(o, "%s", reason(lsock_socket_error_string(s)));
                break;
            }
        if (rc) break;
        sent += (int64_t)n;
        if (show && now_s() - shown >= 0.1) {
            shown = now_s();
            progress(sent, total, start, 0);
        }
    }
    if (!rc && ferror(in))
        rc = fail(o, "reading %s: %s", o->file ? o->file : "stdin", strerror(errno));
    while (!rc && lsock_socket_bytes_to_write(s) > 0)
        if (!lsock_socket_wait_for_bytes_written(s, -1))
            rc = fail(o, "%s", reason(lsock_socket_error_string(s)));
    if (!rc) {
        lsock_socket_disconnect(s);
        if (lsock_socket_state(s) != LSOCK_UNCONNECTED) lsock_socket_wait_for_disconnected(s, -1);
        if (show) progress(sent, total < 0 ? sent : total, start, 1);
    }
    lsock_socket_free(s);
    free(buf);
    if (in != stdin) fclose(in);
    return rc;
}

/* ---- connect -------------------------------------------------------------------------------- */

/* stdin is read by a thread (Windows cannot wait on it with a pipe) into a queue that the loop's
 * thread takes after lsock_loop_wakeup(). */
typedef struct chunk {
    struct chunk *next;
    size_t len;
    char data[];
} chunk;

typedef struct session {
    const opts *o;
    lsock_loop *loop;
    lsock_socket *s;
    pthread_mutex_t lock;
    chunk *head, *tail;
    int eof;                  /* stdin ended (set by the reader) */
    int input_done, finished; /* the loop's view */
    int rc;
    lsock_timer *quit;
    char line[65536]; /* --message: a line being gathered */
    size_t line_len;
} session;

static void *stdin_reader(void *arg)
{
    session *ss = arg;
    for (;;) {
        chunk *c = malloc(sizeof *c + 65536);
        if (!c) break;
#ifdef _WIN32
        int n = _read(0, c->data, 65536);
#else
        ssize_t n = read(0, c->data, 65536);
        if (n < 0 && errno == EINTR) {
            free(c);
            continue;
        }
#endif
        if (n <= 0) {
            free(c);
            break;
        }
        c->len = (size_t)n;
        c->next = NULL;
        pthread_mutex_lock(&ss->lock);
        if (ss->tail)
            ss->tail->next = c;
        else
            ss->head = c;
        ss->tail = c;
        pthread_mutex_unlock(&ss->lock);
        lsock_loop_wakeup(ss->loop);
    }
    pthread_mutex_lock(&ss->lock);
    ss->eof = 1;
    pthread_mutex_unlock(&ss->lock);
    lsock_loop_wakeup(ss->loop);
    return NULL;
}

static void print_messages(lsock_socket *s)
{
    char *buf = NULL;
    while (lsock_socket_can_read_message(s)) {
        int64_t n = lsock_socket_next_message_size(s);
        char *grown = realloc(buf, (size_t)n + 1);
        if (!grown) break;
        buf = grown;
        if (lsock_socket_read_message(s, buf, n) != n) break;
        fwrite(buf, 1, (size_t)n, stdout);
        fputc('\n', stdout);
    }
    free(buf);
    fflush(stdout);
}

static void print_bytes(lsock_socket *s)
{
    char buf[65536];
    int64_t n;
    while ((n = lsock_socket_read(s, buf, sizeof buf)) > 0)
        fwrite(buf, 1, (size_t)n, stdout);
    fflush(stdout);
}

static void conn_ready_read(lsock_socket *s, void *ud)
{
    session *ss = ud;
    if (ss->o->message)
        print_messages(s);
    else
        print_bytes(s);
}

static void conn_disconnected(lsock_socket *s, void *ud)
{
    session *ss = ud;
    conn_ready_read(s, ud);
    lsock_error e = lsock_socket_error(s);
    if (e != LSOCK_ERR_NONE && e != LSOCK_ERR_PEER_CLOSED)
        ss->rc = fail(ss->o, "%s", reason(lsock_socket_error_string(s)));
    ss->finished = 1;
    lsock_loop_stop(ss->loop);
}

static void quit_cb(lsock_timer *t, void *ud)
{
    session *ss = ud;
    (void)t;
    ss->finished = 1;
    lsock_loop_stop(ss->loop);
}

/* Hands what stdin gave to the server: bytes as they are, or (--message) one message a line. */
static void forward(session *ss, const chunk *c)
{
    if (!ss->o->message) {
        lsock_socket_write(ss->s, c->data, (int64_t)c->len);
        return;
    }
    for (size_t i = 0; i < c->len; i++) {
        char ch = c->data[i];
        if (ch == '\n' || ss->line_len == sizeof ss->line) {
            size_t len = ss->line_len;
            if (len && ss->line[len - 1] == '\r') len--;
            lsock_socket_write_message(ss->s, ss->line, (int64_t)len);
            ss->line_len = 0;
            if (ch == '\n') continue;
        }
        ss->line[ss->line_len++] = ch;
    }
}

static int cmd_connect(const opts *o)
{
    session ss;
    memset(&ss, 0, sizeof ss);
    ss.o = o;
    ss.loop = lsock_loop_new();
    ss.s = lsock_socket_new(ss.loop);
    if (!ss.loop || !ss.s) return fail(o, "out of memory");
    pthread_mutex_init(&ss.lock, NULL);
    lsock_socket_callbacks cb = {.ready_read = conn_ready_read, .disconnected = conn_disconnected};
    lsock_socket_set_callbacks(ss.s, &cb, &ss);
    lsock_socket_set_options(ss.s, o->options);
    /* Connected before stdin is read: a failure is reported at once. */
    lsock_socket_connect(ss.s, o->name, LSOCK_READ_WRITE);
    while (lsock_socket_state(ss.s) == LSOCK_CONNECTING)
        lsock_socket_wait_for_connected(ss.s, -1);
    if (lsock_socket_state(ss.s) != LSOCK_CONNECTED)
        return fail(o, "%s", reason(lsock_socket_error_string(ss.s)));
    pthread_t th;
    if (pthread_create(&th, NULL, stdin_reader, &ss) != 0) return fail(o, "cannot start a thread");
    pthread_detach(th); /* it may sit in read() for ever: the process ends without it */
    while (!ss.finished) {
        lsock_loop_run(ss.loop, LSOCK_RUN_ONCE);
        pthread_mutex_lock(&ss.lock);
        chunk *c = ss.head;
        ss.head = ss.tail = NULL;
        int eof = ss.eof;
        pthread_mutex_unlock(&ss.lock);
        while (c) {
            chunk *next = c->next;
            if (!ss.finished) forward(&ss, c);
            free(c);
            c = next;
        }
        if (eof && !ss.input_done && !ss.finished) {
            ss.input_done = 1;
            if (o->message && ss.line_len) {
                lsock_socket_write_message(ss.s, ss.line, (int64_t)ss.line_len);
                ss.line_len = 0;
            }
            lsock_socket_flush(ss.s);
            if (o->linger_secs >= 0) {
                ss.quit = lsock_timer_new(ss.loop, quit_cb, &ss);
                lsock_timer_start(ss.quit, (uint64_t)o->linger_secs * 1000, 0);
            }
        }
    }
    /* What is still queued goes before the end (-q 0 included). */
    if (lsock_socket_state(ss.s) == LSOCK_CONNECTED) {
        lsock_socket_disconnect(ss.s);
        if (lsock_socket_state(ss.s) != LSOCK_UNCONNECTED)
            lsock_socket_wait_for_disconnected(ss.s, 5000);
    }
    fflush(stdout);
    int rc = ss.rc;
    _exit(rc); /* the reader thread may be blocked in read(): end without joining it */
}

/* ---- listen ---------------------------------------------------------------------------------- */

typedef struct listener {
    const opts *o;
    lsock_loop *loop;
    lsock_server *srv;
    lsock_socket *current; /* without --echo: the client being copied to stdout */
} listener;

static void echo_ready_read(lsock_socket *s, void *ud)
{
    char buf[65536];
    int64_t n;
    if (((listener *)ud)->o->message) {
        while (lsock_socket_can_read_message(s)) {
            int64_t m = lsock_socket_next_message_size(s);
            char *msg = malloc((size_t)m + 1);
            if (!msg || lsock_socket_read_message(s, msg, m) != m) {
                free(msg);
                return;
            }
            lsock_socket_write_message(s, msg, m);
            free(msg);
        }
        return;
    }
    while ((n = lsock_socket_read(s, buf, sizeof buf)) > 0)
        lsock_socket_write(s, buf, n);
}

static void echo_disconnected(lsock_socket *s, void *ud)
{
    (void)ud;
    lsock_socket_free(s);
}

static void copy_ready_read(lsock_socket *s, void *ud)
{
    listener *l = ud;
    if (l->o->message)
        print_messages(s);
    else
        print_bytes(s);
}

static void take_next(listener *l);

static void copy_disconnected(lsock_socket *s, void *ud)
{
    listener *l = ud;
    copy_ready_read(s, ud);
    lsock_socket_free(s);
    l->current = NULL;
    if (!l->o->keep)
        lsock_loop_stop(l->loop);
    else
        take_next(l);
}

static void take_next(listener *l)
{
    static const lsock_socket_callbacks copy = {.ready_read = copy_ready_read,
                                                .disconnected = copy_disconnected};
    if (l->current) return;
    lsock_socket *s = lsock_server_next_pending_connection(l->srv);
    if (!s) return;
    l->current = s;
    lsock_socket_set_callbacks(s, &copy, l);
    copy_ready_read(s, l);
}

static void on_new_connection(lsock_server *srv, void *ud)
{
    static const lsock_socket_callbacks echo = {.ready_read = echo_ready_read,
                                                .disconnected = echo_disconnected};
    listener *l = ud;
    if (!l->o->echo) {
        take_next(l);
        return;
    }
    lsock_socket *s;
    while ((s = lsock_server_next_pending_connection(srv))) {
        lsock_socket_set_callbacks(s, &echo, l);
        echo_ready_read(s, l);
    }
}

static volatile sig_atomic_t interrupted;

static void on_signal(int sig)
{
    interrupted = sig;
}

static void signal_tick(lsock_timer *t, void *ud)
{
    (void)t;
    if (interrupted) lsock_loop_stop(((listener *)ud)->loop);
}

static int cmd_listen(const opts *o)
{
    listener l = {o, lsock_loop_new(), NULL, NULL};
    l.srv = lsock_server_new(l.loop);
    if (!l.loop || !l.srv) return fail(o, "out of memory");
    signal(SIGINT, on_signal);
    signal(SIGTERM, on_signal);
    lsock_timer *tick = lsock_timer_new(l.loop, signal_tick, &l);
    lsock_timer_start(tick, 100, 100);
    lsock_server_set_socket_options(l.srv, o->options | o->access | LSOCK_RECLAIM_STALE);
    lsock_server_set_new_connection_callback(l.srv, on_new_connection, &l);
    if (!lsock_server_listen(l.srv, o->name))
        return fail(o, "%s", reason(lsock_server_error_string(l.srv)));
    fprintf(stderr, "lsock listen: listening on %s\n", lsock_server_full_server_name(l.srv));
    lsock_loop_run(l.loop, LSOCK_RUN_DEFAULT);
    fflush(stdout);
    lsock_timer_free(tick);
    if (l.current) lsock_socket_free(l.current);
    lsock_server_free(l.srv); /* removes the socket file */
    lsock_loop_free(l.loop);
    if (interrupted && !o->echo && !o->keep && l.current)
        return fail(o, "interrupted before the client disconnected");
    return 0;
}

/* ---- main ------------------------------------------------------------------------------------ */

int main(int argc, char **argv)
{
    opts o;
#ifdef _WIN32
    /* Bytes as they are, "\n" as "\n": the output goes to pipes and files as on Unix. */
    _setmode(_fileno(stdin), _O_BINARY);
    _setmode(_fileno(stdout), _O_BINARY);
    _setmode(_fileno(stderr), _O_BINARY);
#endif
    int rc = parse(argc, argv, &o);
    if (rc != 0) return rc < 0 ? 0 : rc;
#ifndef _WIN32
    signal(SIGPIPE, SIG_IGN);
#endif
    if (!strcmp(o.cmd, "probe")) return cmd_probe(&o);
    if (!strcmp(o.cmd, "rm")) return cmd_rm(&o);
    if (!strcmp(o.cmd, "ls")) return cmd_ls(&o);
    if (!strcmp(o.cmd, "send")) return cmd_send(&o);
    if (!strcmp(o.cmd, "connect")) return cmd_connect(&o);
    return cmd_listen(&o);
}
