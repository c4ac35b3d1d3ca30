/*
 * Internal declarations of the portable core (the .c files in src/). Nothing here is public.
 * Cross-file names carry the lsock__ prefix; file-local statics carry none.
 *
 *  - platform.h: the seam between core and platform (lsock__plat_*, the event backend), with
 *    its lifetime, thread and fork rules;
 *  - loop.h: watchers, deferred work and the loop's counters;
 *  - buffer.h: the byte queue of the read and write buffers;
 *  - below: errors, and what socket.c and server.c share.
 */
#ifndef LSOCK_INTERNAL_H
#define LSOCK_INTERNAL_H

#include "lsock.h"
#include "buffer.h"
#include "loop.h"
#include "platform.h"

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

/* ---- errors ---------------------------------------------------------------------------- */

/* An error with the text of its call: "lsock_socket_connect: Connection refused". The text
 * buffer is allocated at the first error only (most objects never fail, and an idle
 * connection should not carry it), sized for the longest text lsock writes (a call, a
 * message, and a detail such as the name limit's explanation, with room to spare); a longer
 * detail (a long strerror()) is cut at a word boundary and marked with "...", never in the
 * middle of a word. Out of memory for the buffer, the code is still set and the text says
 * so. lsock__err_free() releases the buffer with its object. */
#define LSOCK__ERRTEXT_SIZE 384
typedef struct lsock__errinfo {
    lsock_error code;
    char *text; /* NULL until the first error */
} lsock__errinfo;

void lsock__err_set(lsock__errinfo *e, lsock_error code, const char *call, const char *detail);
void lsock__err_clear(lsock__errinfo *e);
/* The text of the last error, "" when there is none. */
const char *lsock__err_text(const lsock__errinfo *e);
void lsock__err_free(lsock__errinfo *e);
/* The one error mapping: -errno (or errno) of connect / of bind, listen and their files. */
lsock_error lsock__connect_error(int err);
lsock_error lsock__listen_error(int err);

/* ---- socket and server, shared between socket.c and server.c ---------------------------- */

/* Makes a connected socket on loop for an accepted fd (server use). NULL on no memory. */
lsock_socket *lsock__socket_from_accepted(lsock_loop *loop, int fd, unsigned fork_stamp,
                                          const char *name, const char *full);
/* Starts watching an accepted socket handed to the user. */
void lsock__socket_activate(lsock_socket *s);

/* Counters for tests (socket_io.c): ready_reads fired with the bytes left in the kernel, and
 * reads that took bytes from the kernel straight into the caller's buffer. Atomic: sockets
 * of several threads count into them. */
extern atomic_ulong lsock__test_announced, lsock__test_direct_reads;

#endif
