/* SPDX-License-Identifier: MIT
 *
 * auth_verify: password checks off the event loop (broker/auth/verify.c). */
#ifndef LUNAMQ_AUTH_VERIFY_H
#define LUNAMQ_AUTH_VERIFY_H

#include <stdbool.h>
#include <stddef.h>

#include "auth.h"

struct event_base;
struct verifier;

/* One check: pwfile_verify(file, user, password). The owner fills them and done, and
 * keeps them valid (a pwfile reference, its own copies) until done() runs. */
struct verify_job {
    const struct pwfile *file;
    const char *user;
    size_t ulen;
    const void *password;
    size_t len;
    bool ok;                            /* set before done() */
    bool cancelled;                     /* verifier_cancel was called: ok means nothing */
    void (*done)(struct verify_job *j); /* on the loop, exactly once; frees the job */
    struct verify_job *next;
};

/* Threads: one fewer than the CPUs (at least 1, at most 4). At most max_pending jobs
 * at a time. NULL when no thread could start. */
struct verifier *verifier_new(struct event_base *base, size_t max_pending);
/* false: max_pending jobs already; the job is not taken. */
bool verifier_submit(struct verifier *v, struct verify_job *j);
/* The owner went away: the check is skipped if not started; done() still runs. */
void verifier_cancel(struct verifier *v, struct verify_job *j);
size_t verifier_pending(const struct verifier *v);
/* Joins the threads; every job not finished gets done() with cancelled set. */
void verifier_free(struct verifier *v);

#endif
