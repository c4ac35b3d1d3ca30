/*
 * Errors: the one table (LSOCK_ERROR_MAP in lsock.h) gives every error its name and its
 * message; an object's error text is "<call>: <message>[ (<detail>)]".
 */
#include "internal.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const names[] = {
#define NAME_(name, text) #name,
    LSOCK_ERROR_MAP(NAME_)
#undef NAME_
};

static const char *const messages[] = {
#define TEXT_(name, text) text,
    LSOCK_ERROR_MAP(TEXT_)
#undef TEXT_
};

const char *lsock_error_name(lsock_error err)
{
    if ((unsigned)err >= (unsigned)LSOCK_ERR_COUNT_) return "INVALID";
    return names[err];
}

const char *lsock_strerror(lsock_error err)
{
    if ((unsigned)err >= (unsigned)LSOCK_ERR_COUNT_) return "Invalid error code";
    return messages[err];
}

const char *lsock_version(void)
{
#define STR2_(x) #x
#define STR_(x)  STR2_(x)
    return STR_(LSOCK_VERSION_MAJOR) "." STR_(LSOCK_VERSION_MINOR) "." STR_(LSOCK_VERSION_PATCH);
}

/* Stands in for the text when its buffer cannot be allocated; never written to. */
static char no_memory_text[] = "lsock: out of memory (the error text could not be stored)";

void lsock__err_set(lsock__errinfo *e, lsock_error code, const char *call, const char *detail)
{
    e->code = code;
    if (!e->text || e->text == no_memory_text) {
        char *buf = malloc(LSOCK__ERRTEXT_SIZE);
        if (!buf) {
            e->text = no_memory_text;
            return;
        }
        e->text = buf;
    }
    const size_t size = LSOCK__ERRTEXT_SIZE;
    int n;
    if (detail && *detail)
        n = snprintf(e->text, size, "%s: %s (%s)", call, lsock_strerror(code), detail);
    else
        n = snprintf(e->text, size, "%s: %s", call, lsock_strerror(code));
    if (n < 0 || (size_t)n < size) return;
    /* Too long (only a detail can be): end at the last whole word that leaves room for the
     * mark. */
    static const char more[] = "...)";
    size_t end = size - sizeof more;
    while (end > 0 && e->text[end] != ' ')
        end--;
    while (end > 0 && e->text[end - 1] == ' ')
        end--;
    memcpy(e->text + end, more, sizeof more);
}

void lsock__err_clear(lsock__errinfo *e)
{
    e->code = LSOCK_ERR_NONE;
    if (e->text && e->text != no_memory_text)
        e->text[0] = '\0';
    else
        e->text = NULL;
}

const char *lsock__err_text(const lsock__errinfo *e)
{
    return e->text ? e->text : "";
}

void lsock__err_free(lsock__errinfo *e)
{
    if (e->text != no_memory_text) free(e->text);
    e->text = NULL;
}

/* The error mapping, one table for every platform (the platform layers report -errno values;
 * the Windows layer maps its error codes to errno first). connect(2), as Qt maps it in
 * QLocalSocketPrivate::_q_connectToSocket: */
lsock_error lsock__connect_error(int err)
{
    switch (err < 0 ? -err : err) {
    case ECONNREFUSED:
    case EINVAL:
    case ENOTSOCK:
    case EPROTOTYPE:
        return LSOCK_ERR_CONNECTION_REFUSED;
    case ENOENT:
    case ENOTDIR:
    case ENAMETOOLONG:
        return LSOCK_ERR_SERVER_NOT_FOUND;
    case EACCES:
    case EPERM:
        return LSOCK_ERR_SOCKET_ACCESS;
    case ETIMEDOUT:
        return LSOCK_ERR_SOCKET_TIMEOUT;
    case EMFILE:
    case ENFILE:
    case ENOBUFS:
    case ENOMEM:
        return LSOCK_ERR_SOCKET_RESOURCE;
    case EADDRINUSE:
        return LSOCK_ERR_ADDRESS_IN_USE;
    default:
        return LSOCK_ERR_UNKNOWN;
    }
}

/* bind(2) and listen(2), and the files around them: */
lsock_error lsock__listen_error(int err)
{
    switch (err < 0 ? -err : err) {
    case EADDRINUSE:
    case EEXIST:
        return LSOCK_ERR_ADDRESS_IN_USE;
    case EACCES:
    case EPERM:
    case EROFS:
        return LSOCK_ERR_SOCKET_ACCESS;
    case ENOENT:
    case ENOTDIR:
    case ENAMETOOLONG:
        return LSOCK_ERR_SERVER_NOT_FOUND;
    case EMFILE:
    case ENFILE:
    case ENOMEM:
    case ENOBUFS:
        return LSOCK_ERR_SOCKET_RESOURCE;
    case EAFNOSUPPORT:
        return LSOCK_ERR_UNSUPPORTED_OPERATION;
    default:
        return LSOCK_ERR_UNKNOWN;
    }
}
