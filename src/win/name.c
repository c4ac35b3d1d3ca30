/*
 * Server names on Windows, resolved as Qt resolves them (QLocalSocket, QLocalServer): a name
 * that already starts with \\.\pipe\ is used as is, any other name becomes \\.\pipe\NAME.
 * Unlike on Unix there is no directory: a name with slashes is one pipe name.
 *
 * Win32 path rules apply to \\.\pipe\ names as to any other: '/' becomes '\', repeated
 * separators collapse, and "." and ".." components are resolved, so "..\C:\file" opens a file
 * and "\\.\pipe\" alone (or "\") names the pipe file system itself. lsock__name_check
 * refuses both kinds, where Qt would try to open them.
 */
#include "win.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define PREFIX "\\\\.\\pipe\\"

/* Per-user names (LSOCK_PER_USER): a bare name becomes \\.\pipe\<user SID>\NAME, a name of
 * the user's own; a pipe path stays as given. */
int lsock__name_resolve(const char *name, unsigned options, char **out, char *why, size_t whysize)
{
    *out = NULL;
    if (whysize) why[0] = '\0';
    size_t pl = strlen(PREFIX), nl = strlen(name);
    if (nl >= pl && strncmp(name, PREFIX, pl) == 0) {
        *out = malloc(nl + 1);
        if (!*out) return -ENOMEM;
        memcpy(*out, name, nl + 1);
        return 0;
    }
    char sid[256] = "";
    if (options & LSOCK_PER_USER) {
        int rc = lsock__win_own_sid(sid, sizeof sid - 1);
        if (rc < 0) {
            snprintf(why, whysize, "cannot tell this process's user SID for a per-user name");
            return -EACCES;
        }
        strcat(sid, "\\");
    }
    size_t sl = strlen(sid);
    *out = malloc(pl + sl + nl + 1);
    if (!*out) return -ENOMEM;
    memcpy(*out, PREFIX, pl);
    memcpy(*out + pl, sid, sl);
    memcpy(*out + pl + sl, name, nl + 1);
    return 0;
}

static int is_sep(char c)
{
    return c == '\\' || c == '/';
}

const char *lsock__name_check(const char *path)
{
    size_t pl = strlen(PREFIX);
    const char *p = strncmp(path, PREFIX, pl) == 0 ? path + pl : path;
    int named = 0;
    while (*p) {
        while (is_sep(*p))
            p++;
        const char *c = p;
        int dots = 0, other = 0; /* dots, and characters other than dots and spaces */
        for (; *p && !is_sep(*p); p++) {
            if (*p == '.')
                dots++;
            else if (*p != ' ')
                other = 1;
        }
        if (p == c) continue;
        /* Windows drops trailing dots and spaces from a component: one of dots and spaces
         * alone may become "." or "..". */
        if (!other)
            return dots ? "a pipe name may not have a \".\" or \"..\" component: Windows would "
                          "resolve it out of \\\\.\\pipe\\"
                        : "a pipe name may not have a component of spaces only: Windows would "
                          "drop it";
        named = 1;
    }
    if (!named) return "empty pipe name: \\\\.\\pipe\\ alone names no pipe";
    return NULL;
}
