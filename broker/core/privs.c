/* SPDX-License-Identifier: MIT
 *
 * privs: dropping root for good: groups first (they need root), then the uid, then
 * a check that it cannot be undone. */
#define _GNU_SOURCE /* setresuid, getresuid */
#include <errno.h>
#include <grp.h>
#include <pwd.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "lq.h"
#include "privs.h"

int
privs_lookup(const char *user, struct privs *p, char *err, size_t errlen)
{
    memset(p, 0, sizeof(*p));
    if (!user || geteuid() != 0 || strcmp(user, "root") == 0) return 0;
    errno = 0;
    const struct passwd *pw = getpwnam(user);
    if (!pw) {
        snprintf(err, errlen, "user %s: %s", user,
                 errno ? strerror(errno) : "no such user on this system");
        return -1;
    }
    if (strlen(user) >= sizeof(p->name)) {
        snprintf(err, errlen, "user %s: name too long", user);
        return -1;
    }
    if (pw->pw_uid == 0) return 0; /* another name for root: nothing to drop */
    snprintf(p->name, sizeof(p->name), "%s", user);
    p->uid = pw->pw_uid;
    p->gid = pw->pw_gid;
    p->drop = true;
    return 0;
}

int
privs_give(const struct privs *p, const char *path)
{
    if (!p->drop) return 0;
    return lchown(path, p->uid, p->gid); /* never through a link */
}

int
privs_drop(const struct privs *p, char *err, size_t errlen)
{
    if (!p->drop) return 0;
    const char *step = "initgroups";
    if (initgroups(p->name, p->gid) < 0) goto fail;
    step = "setresgid";
    if (setresgid(p->gid, p->gid, p->gid) < 0) goto fail;
    step = "setresuid";
    if (setresuid(p->uid, p->uid, p->uid) < 0) goto fail;
    /* it must stick: no saved id, no capability to go back with */
    uid_t r, e, s;
    gid_t rg, eg, sg;
    if (setuid(0) == 0 || seteuid(0) == 0 || setgid(0) == 0 || getresuid(&r, &e, &s) < 0 ||
        getresgid(&rg, &eg, &sg) < 0 || r != p->uid || e != p->uid || s != p->uid || rg != p->gid ||
        eg != p->gid || sg != p->gid) {
        snprintf(err, errlen, "user %s: root could be regained after the drop: not going on",
                 p->name);
        return -1;
    }
    lq_log(LQ_LOG_NOTICE, "running as user %s (uid %u, gid %u)", p->name, (unsigned)p->uid,
           (unsigned)p->gid);
    return 0;
fail:
    snprintf(err, errlen, "user %s: cannot drop privileges: %s: %s", p->name, step,
             strerror(errno));
    return -1;
}
