/*
 * Single-instance applications (lsock_instance_*): the election is the listening socket, the
 * messages are lsock messages, the scope is a set of options (lsock.h, docs/single-instance.md).
 * Built on the public socket and server calls only, plus the platform's process and session
 * ids.
 */
#include "internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define NAME_PREFIX  "lsock-instance-"
#define READABLE_MAX 32 /* bytes of the app id kept readable in the name */
#define RETRY_MIN_MS 1  /* pause between election attempts, doubling */
#define RETRY_MAX_MS 50

enum role { NONE, PRIMARY, SECONDARY };

struct lsock_instance {
    lsock_loop *loop;
    char *name;
    int scope;
    enum role role;
    lsock_server *srv;      /* primary */
    lsock_socket **clients; /* primary: the secondaries connected now */
    size_t nclients, capclients;
    lsock_socket *conn;  /* secondary: the connection to the primary */
    int64_t primary_pid; /* -1: unknown */
    lsock_instance_message_cb cb;
    void *ud;
    lsock__errinfo err;
    int depth; /* message callbacks on the stack */
    int dead;  /* freed inside one: released when the last returns */
};

/* ---- the name ------------------------------------------------------------------------ */

static uint64_t fnv1a(uint64_t h, const void *data, size_t n)
{
    const unsigned char *p = data;
    for (size_t i = 0; i < n; i++) {
        h ^= p[i];
        h *= 0x100000001b3ull;
    }
    return h;
}

static char *instance_name(const char *app_id, int scope)
{
    uint64_t h = fnv1a(0xcbf29ce484222325ull, app_id, strlen(app_id));
    if (scope == LSOCK_INSTANCE_PER_SESSION) {
        char session[80];
        lsock__plat_session_id(session, sizeof session);
        h = fnv1a(h, "\n", 1);
        h = fnv1a(h, session, strlen(session));
    }
    char readable[READABLE_MAX + 1];
    size_t n = 0;
    for (; app_id[n] && n < READABLE_MAX; n++) {
        unsigned char c = (unsigned char)app_id[n];
        int keep = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                   c == '.' || c == '_' || c == '-';
        readable[n] = keep ? (char)c : '_';
    }
    readable[n] = '\0';
    size_t size = sizeof NAME_PREFIX + n + 1 + 16 + 1;
    char *name = malloc(size);
    if (name) snprintf(name, size, "%s%s-%016llx", NAME_PREFIX, readable, (unsigned long long)h);
    return name;
}

static unsigned server_options(int scope)
{
    if (scope == LSOCK_INSTANCE_SYSTEM) return LSOCK_WORLD_ACCESS | LSOCK_RECLAIM_STALE;
    return LSOCK_USER_ACCESS | LSOCK_RECLAIM_STALE | LSOCK_PER_USER | LSOCK_SAME_USER_ONLY;
}

static unsigned client_options(int scope)
{
    return scope == LSOCK_INSTANCE_SYSTEM ? 0 : LSOCK_PER_USER | LSOCK_SAME_USER_ONLY;
}

/* ---- lifetime ------------------------------------------------------------------------- */

lsock_instance *lsock_instance_new(lsock_loop *loop, const char *app_id, int scope)
{
    if (!app_id || !*app_id || scope < LSOCK_INSTANCE_PER_USER || scope > LSOCK_INSTANCE_SYSTEM)
        return NULL;
    lsock_instance *inst = calloc(1, sizeof *inst);
    if (!inst) return NULL;
    inst->name = instance_name(app_id, scope);
    if (!inst->name) {
        free(inst);
        return NULL;
    }
    inst->loop = loop;
    inst->scope = scope;
    inst->primary_pid = -1;
    return inst;
}

static void drop_client(lsock_instance *inst, lsock_socket *s)
{
    for (size_t i = 0; i < inst->nclients; i++) {
        if (inst->clients[i] != s) continue;
        inst->clients[i] = inst->clients[--inst->nclients];
        break;
    }
    lsock_socket_free(s);
}

static void destroy(lsock_instance *inst)
{
    free(inst->clients);
    free(inst->name);
    lsock__err_free(&inst->err);
    free(inst);
}

void lsock_instance_free(lsock_instance *inst)
{
    if (!inst || inst->dead) return;
    inst->dead = 1;
    while (inst->nclients > 0)
        drop_client(inst, inst->clients[0]);
    lsock_server_free(inst->srv); /* the name is free from here on */
    inst->srv = NULL;
    lsock_socket_free(inst->conn);
    inst->conn = NULL;
    if (inst->depth == 0) destroy(inst);
}

/* ---- primary: receiving ---------------------------------------------------------------- */

/* Every whole message to the callback, each acknowledged with an empty message once the
 * callback has returned. Partial messages wait; a connection that ends mid-message takes its
 * part with it. */
static void on_ready_read(lsock_socket *s, void *ud)
{
    lsock_instance *inst = ud;
    inst->depth++;
    while (!inst->dead && lsock_socket_can_read_message(s)) {
        int64_t n = lsock_socket_next_message_size(s);
        void *buf = malloc(n > 0 ? (size_t)n : 1);
        if (!buf) {
            lsock_socket_abort(s); /* nothing half-delivered; the sender sees the end */
            break;
        }
        if (lsock_socket_read_message(s, buf, n) != n) {
            free(buf);
            break;
        }
        lsock_credentials cr = {-1, -1, -1};
        if (!lsock_socket_peer_credentials(s, &cr)) cr.pid = cr.uid = cr.gid = -1;
        if (inst->cb) inst->cb(inst, buf, n, &cr, inst->ud);
        free(buf);
        if (inst->dead) break; /* freed inside the callback, s with it */
        lsock_socket_write_message(s, "", 0);
    }
    if (--inst->depth == 0 && inst->dead) destroy(inst);
}

static void on_disconnected(lsock_socket *s, void *ud)
{
    drop_client(ud, s);
}

static void on_new_connection(lsock_server *srv, void *ud)
{
    static const lsock_socket_callbacks cb = {.ready_read = on_ready_read,
                                              .disconnected = on_disconnected};
    lsock_instance *inst = ud;
    lsock_socket *s;
    inst->depth++; /* a callback below may free the instance */
    while (!inst->dead && (s = lsock_server_next_pending_connection(srv))) {
        if (inst->nclients == inst->capclients) {
            size_t cap = inst->capclients ? inst->capclients * 2 : 8;
            lsock_socket **grown = realloc(inst->clients, cap * sizeof *grown);
            if (!grown) {
                lsock_socket_free(s); /* the secondary sees the end and may try again */
                continue;
            }
            inst->clients = grown;
            inst->capclients = cap;
        }
        inst->clients[inst->nclients++] = s;
        lsock_socket_set_callbacks(s, &cb, inst);
        if (lsock_socket_can_read_message(s)) on_ready_read(s, inst);
    }
    if (--inst->depth == 0 && inst->dead) destroy(inst);
}

/* ---- the election ---------------------------------------------------------------------- */

static int fail(lsock_instance *inst, lsock_error code, const char *call, const char *detail)
{
    lsock__err_set(&inst->err, code, call, detail);
    return -1;
}

static bool failed(lsock_instance *inst, lsock_error code, const char *call, const char *detail)
{
    fail(inst, code, call, detail);
    return false;
}

/* Milliseconds left until deadline (msecs < 0: no limit, -1). */
static int left(uint64_t deadline, int msecs)
{
    if (msecs < 0) return -1;
    uint64_t now = lsock__now_ms();
    return now >= deadline ? 0 : (int)(deadline - now);
}

/* 1 primary, 0 the name is taken, -1 failed (the error set). */
static int try_listen(lsock_instance *inst)
{
    static const char call[] = "lsock_instance_acquire";
    lsock_server *srv = lsock_server_new(inst->loop);
    if (!srv) return fail(inst, LSOCK_ERR_SOCKET_RESOURCE, call, "out of memory");
    lsock_server_set_socket_options(srv, server_options(inst->scope));
    lsock_server_set_new_connection_callback(srv, on_new_connection, inst);
    if (lsock_server_listen(srv, inst->name)) {
        inst->srv = srv;
        inst->role = PRIMARY;
        inst->primary_pid = lsock__plat_process_id();
        return 1;
    }
    lsock_error e = lsock_server_error(srv);
    if (e != LSOCK_ERR_ADDRESS_IN_USE) fail(inst, e, call, lsock_server_error_string(srv));
    lsock_server_free(srv);
    return e == LSOCK_ERR_ADDRESS_IN_USE ? 0 : -1;
}

/* 1 connected to the primary, 0 no primary answers (yet), -1 failed (the error set). */
static int try_connect(lsock_instance *inst, int timeout)
{
    static const char call[] = "lsock_instance_acquire";
    lsock_socket *s = lsock_socket_new(NULL);
    if (!s) return fail(inst, LSOCK_ERR_SOCKET_RESOURCE, call, "out of memory");
    lsock_socket_set_options(s, client_options(inst->scope));
    lsock_socket_set_connect_timeout(s, timeout < 0 ? 30000 : timeout);
    /* A loop-less connect returns CONNECTING while the primary's backlog is full (Windows:
     * every pipe instance busy): wait for it, within the time left. */
    if (lsock_socket_connect(s, inst->name, LSOCK_READ_WRITE) &&
        (lsock_socket_state(s) == LSOCK_CONNECTED ||
         lsock_socket_wait_for_connected(s, timeout < 0 ? -1 : timeout))) {
        lsock_credentials cr;
        inst->primary_pid = lsock_socket_peer_credentials(s, &cr) ? cr.pid : -1;
        inst->conn = s;
        inst->role = SECONDARY;
        return 1;
    }
    lsock_error e = lsock_socket_error(s);
    int again = e == LSOCK_ERR_SERVER_NOT_FOUND || e == LSOCK_ERR_CONNECTION_REFUSED ||
                e == LSOCK_ERR_PEER_CLOSED || e == LSOCK_ERR_SOCKET_TIMEOUT;
    if (!again) fail(inst, e, call, lsock_socket_error_string(s));
    lsock_socket_free(s);
    return again ? 0 : -1;
}

int lsock_instance_acquire(lsock_instance *inst, int msecs)
{
    static const char call[] = "lsock_instance_acquire";
    if (!inst || inst->dead) return -1;
    if (inst->role != NONE) return fail(inst, LSOCK_ERR_OPERATION, call, "acquired already");
    lsock__err_clear(&inst->err);
    uint64_t deadline = lsock__now_ms() + (uint64_t)(msecs < 0 ? 0 : msecs);
    int pause = RETRY_MIN_MS;
    for (;;) {
        int rc = try_listen(inst);
        if (rc != 0) return rc < 0 ? -1 : 1;
        /* Taken: a primary, or one starting or just gone. Ask it, and elect again if none. */
        rc = try_connect(inst, left(deadline, msecs));
        if (rc != 0) return rc < 0 ? -1 : 0;
        int rest = left(deadline, msecs);
        if (rest == 0)
            return fail(inst, LSOCK_ERR_SOCKET_TIMEOUT, call,
                        "the name stayed taken and no primary answered");
        lsock__plat_sleep_ms(rest > 0 && rest < pause ? rest : pause);
        if (pause < RETRY_MAX_MS) pause *= 2;
    }
}

bool lsock_instance_is_primary(const lsock_instance *inst)
{
    return inst && inst->role == PRIMARY;
}

void lsock_instance_set_message_callback(lsock_instance *inst, lsock_instance_message_cb cb,
                                         void *userdata)
{
    if (!inst) return;
    inst->cb = cb;
    inst->ud = userdata;
}

/* ---- secondary: sending ---------------------------------------------------------------- */

bool lsock_instance_send(lsock_instance *inst, const void *msg, int64_t len, int msecs)
{
    static const char call[] = "lsock_instance_send";
    if (!inst || inst->dead) return false;
    if (inst->role != SECONDARY || !inst->conn)
        return failed(inst, LSOCK_ERR_OPERATION, call,
                      inst->role == PRIMARY ? "this instance is the primary"
                                            : "not acquired: call lsock_instance_acquire() first");
    if (len < 0 || (!msg && len > 0))
        return failed(inst, LSOCK_ERR_INVALID_ARGUMENT, call,
                      len < 0 ? "negative size" : "NULL message");
    lsock_socket *s = inst->conn;
    if (lsock_socket_write_message(s, msg, len) < 0)
        return failed(inst, lsock_socket_error(s), call, lsock_socket_error_string(s));
    uint64_t deadline = lsock__now_ms() + (uint64_t)(msecs < 0 ? 0 : msecs);
    while (!lsock_socket_can_read_message(s)) {
        if (!lsock_socket_wait_for_ready_read(s, left(deadline, msecs)))
            return failed(inst, lsock_socket_error(s), call, lsock_socket_error_string(s));
    }
    char ack;
    if (lsock_socket_read_message(s, &ack, sizeof ack) != 0)
        return failed(inst, LSOCK_ERR_UNKNOWN, call, "the primary answered with something else");
    return true;
}

int64_t lsock_instance_primary_pid(const lsock_instance *inst)
{
    return inst && inst->role != NONE ? inst->primary_pid : -1;
}

lsock_error lsock_instance_error(const lsock_instance *inst)
{
    return inst ? inst->err.code : LSOCK_ERR_NONE;
}

const char *lsock_instance_error_string(const lsock_instance *inst)
{
    return inst ? lsock__err_text(&inst->err) : "";
}
