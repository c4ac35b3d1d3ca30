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
#include "platform.h"

#include <stdlib.h>
#include <string.h>

#define PREFIX "\\\\.\\pipe\\"

char *lsock__name_resolve(const char *name, int abstract)
{
    (void)abstract; /* pipe names have no abstract namespace */
    size_t pl = strlen(PREFIX), nl = strlen(name);
    if (nl >= pl && strncmp(name, PREFIX, pl) == 0) {
        char *copy = malloc(nl + 1);
        if (copy) memcpy(copy, name, nl + 1);
        return copy;
    }
    char *out = malloc(pl + nl + 1);
    if (!out) return NULL;
    memcpy(out, PREFIX, pl);
    memcpy(out + pl, name, nl + 1);
    return out;
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
