/* SPDX-License-Identifier: MIT
 *
 * privs: a broker started as root becomes the `user` of its configuration (mosquitto's
 * option) once it holds what only root may take: its ports and its TLS keys. Started
 * as another user, or with `user root`, or without a `user` line, it stays who it is.
 */
#ifndef LUNAMQ_PRIVS_H
#define LUNAMQ_PRIVS_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

struct privs {
    bool drop; /* started as root and `user` names another user */
    uid_t uid;
    gid_t gid; /* the user's primary group */
    char name[64];
};

/* Decide, and look the user up (only when root: otherwise nothing is done with it).
 * Returns 0, or -1 with "user NAME: ..." in err when the user does not exist. */
int privs_lookup(const char *user, struct privs *p, char *err, size_t errlen);
/* Hand a file made before the drop (the admin socket) to the user, so that it can use
 * and remove it later. No-op without a drop. Returns 0 or -1 (errno). */
int privs_give(const struct privs *p, const char *path);
/* Become the user: its groups (initgroups), its group, its uid (real, effective and
 * saved), then check that root cannot be regained. No-op without a drop. Returns 0,
 * or -1 with the reason in err: the caller must not go on. */
int privs_drop(const struct privs *p, char *err, size_t errlen);

#endif
