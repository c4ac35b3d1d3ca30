/*
 * Errors: the one table (LSOCK_ERROR_MAP in lsock.h) gives every error its name and its
 * message; an object's error text is "<call>: <message>[ (<detail>)]".
 */
#include "internal.h"

#include <stdio.h>

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

void lsock__err_set(lsock__errinfo *e, lsock_error code, const char *call, const char *detail)
{
    e->code = code;
    if (detail && *detail)
        snprintf(e->text, sizeof e->text, "%s: %s (%s)", call, lsock_strerror(code), detail);
    else
        snprintf(e->text, sizeof e->text, "%s: %s", call, lsock_strerror(code));
}

void lsock__err_clear(lsock__errinfo *e)
{
    e->code = LSOCK_ERR_NONE;
    e->text[0] = '\0';
}
