/*
 * Server names, resolved as Qt resolves them so that lsock and Qt programs meet: a name that
 * starts with '/' is a path used as is; any other name lives in the temporary directory,
 * $TMPDIR (or /tmp when TMPDIR is unset or empty), like QDir::tempPath(). An abstract name
 * (LSOCK_ABSTRACT_NAMESPACE) is the name as given, as in Qt 6: "app" is the address "\0app".
 */
#include "platform.h"

#include <stdlib.h>
#include <string.h>

char *lsock__name_resolve(const char *name, int abstract)
{
    if (abstract || name[0] == '/') return strdup(name);
    const char *dir = getenv("TMPDIR");
    if (!dir || !*dir) dir = "/tmp";
    size_t dl = strlen(dir), nl = strlen(name);
    while (dl > 1 && dir[dl - 1] == '/')
        dl--;
    char *out = malloc(dl + 1 + nl + 1);
    if (!out) return NULL;
    memcpy(out, dir, dl);
    if (dir[dl - 1] != '/') out[dl++] = '/';
    memcpy(out + dl, name, nl + 1);
    return out;
}

/* Any path is a socket address (too long ones get their own error when used). */
const char *lsock__name_check(const char *path)
{
    (void)path;
    return NULL;
}
