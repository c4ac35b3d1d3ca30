/*
 * Server names on Windows, resolved as Qt resolves them (QLocalSocket, QLocalServer): a name
 * that already starts with \\.\pipe\ is used as is, any other name becomes \\.\pipe\NAME.
 * Unlike on Unix there is no directory: a name with slashes is one pipe name.
 */
#include "platform.h"

#include <stdlib.h>
#include <string.h>

#define PREFIX "\\\\.\\pipe\\"

char *lsock__name_resolve(const char *name)
{
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
