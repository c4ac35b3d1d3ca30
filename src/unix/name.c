/*
 * Server names, resolved as Qt resolves them so that lsock and Qt programs meet: a name that
 * starts with '/' is a path used as is; any other name lives in the temporary directory,
 * $TMPDIR (or /tmp when TMPDIR is unset or empty), like QDir::tempPath(). An abstract name
 * (LSOCK_ABSTRACT_NAMESPACE) is the name as given, as in Qt 6: "app" is the address "\0app".
 *
 * Per-user names (LSOCK_PER_USER): a bare name lives in the user's private directory instead,
 * $XDG_RUNTIME_DIR when it is an absolute path to a directory of this user closed to others,
 * else $TMPDIR/lsock-<uid>, made with mode 0700 when missing. That directory is refused, never
 * repaired, when it is a symlink, not a directory, another user's, or open to others: nothing
 * is followed, changed or removed.
 */
#include "platform.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static const char *temp_dir(void)
{
    const char *dir = getenv("TMPDIR");
    return dir && *dir ? dir : "/tmp";
}

/* dir + "/" + name, with dir's trailing slashes dropped. NULL on no memory. */
static char *join(const char *dir, const char *name)
{
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

/* Why dir (lstat'ed as st) is no private directory of uid, or NULL when it is one. */
static const char *not_private(const struct stat *st, uid_t uid)
{
    if (S_ISLNK(st->st_mode)) return "is a symbolic link";
    if (!S_ISDIR(st->st_mode)) return "is not a directory";
    if (st->st_uid != uid) return "belongs to another user";
    if (st->st_mode & 077) return "is open to other users";
    return NULL;
}

static int usable_runtime_dir(const char *dir, uid_t uid)
{
    struct stat st;
    return dir && dir[0] == '/' && lstat(dir, &st) == 0 && !not_private(&st, uid);
}

/* The user's private directory (see above) into *out (malloc'd). */
static int private_dir(char **out, char *why, size_t whysize)
{
    uid_t uid = geteuid();
    const char *xdg = getenv("XDG_RUNTIME_DIR");
    if (usable_runtime_dir(xdg, uid)) {
        *out = strdup(xdg);
        return *out ? 0 : -ENOMEM;
    }
    char leaf[32];
    snprintf(leaf, sizeof leaf, "lsock-%lu", (unsigned long)uid);
    char *dir = join(temp_dir(), leaf);
    if (!dir) return -ENOMEM;
    struct stat st;
    if (mkdir(dir, 0700) < 0 && errno != EEXIST) {
        snprintf(why, whysize, "cannot make the per-user directory %s: %s", dir, strerror(errno));
        free(dir);
        return -EACCES;
    }
    if (lstat(dir, &st) < 0) {
        snprintf(why, whysize, "the per-user directory %s: %s", dir, strerror(errno));
        free(dir);
        return -EACCES;
    }
    const char *bad = not_private(&st, uid);
    if (bad) {
        if (S_ISDIR(st.st_mode) && st.st_uid != uid)
            snprintf(why, whysize, "the per-user directory %s belongs to uid %lu, not %lu", dir,
                     (unsigned long)st.st_uid, (unsigned long)uid);
        else if (S_ISDIR(st.st_mode))
            snprintf(why, whysize, "the per-user directory %s is open to other users (mode %03o)",
                     dir, (unsigned)(st.st_mode & 0777));
        else
            snprintf(why, whysize, "the per-user directory %s %s", dir, bad);
        free(dir);
        return -EACCES;
    }
    *out = dir;
    return 0;
}

int lsock__name_resolve(const char *name, unsigned options, char **out, char *why, size_t whysize)
{
    *out = NULL;
    if (whysize) why[0] = '\0';
    if ((options & LSOCK_ABSTRACT_NAMESPACE) || name[0] == '/') {
        *out = strdup(name);
        return *out ? 0 : -ENOMEM;
    }
    if (!(options & LSOCK_PER_USER)) {
        *out = join(temp_dir(), name);
        return *out ? 0 : -ENOMEM;
    }
    char *dir;
    int rc = private_dir(&dir, why, whysize);
    if (rc < 0) return rc;
    *out = join(dir, name);
    free(dir);
    return *out ? 0 : -ENOMEM;
}

/* Any path is a socket address (too long ones get their own error when used). */
const char *lsock__name_check(const char *path)
{
    (void)path;
    return NULL;
}
