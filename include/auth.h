/* SPDX-License-Identifier: MIT
 *
 * auth: who may connect, and what each client may read and write. Reads mosquitto's
 * password_file (mosquitto_passwd's $7$ PBKDF2-SHA512 and $6$ SHA-512 entries) and
 * acl_file formats unchanged. Pure: no sockets, no event loop; a loaded file is
 * immutable and shared by reference (the loop thread alone counts references), so a
 * reload swaps it without touching what a verification in flight holds.
 *
 * The session layer asks; broker/auth/verify.c runs the slow password checks off the
 * loop.
 */
#ifndef LUNAMQ_AUTH_H
#define LUNAMQ_AUTH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* ---- password_file ---- */
struct pwfile;
struct pw_entry;

/* NULL with err "FILE:LINE: why" (or "FILE: why") when it cannot be read or a line is
 * not `user:$7$...` / `user:$6$...`; blank lines and `#` comments are skipped. */
struct pwfile *pwfile_load(const char *path, char *err, size_t errlen);
struct pwfile *pwfile_ref(struct pwfile *f);
void pwfile_unref(struct pwfile *f); /* NULL is a no-op */
size_t pwfile_count(const struct pwfile *f);
/* The entry of a user; NULL: none. Valid while the caller holds a reference. */
const struct pw_entry *pwfile_find(const struct pwfile *f, const char *user, size_t len);
/* Slow on purpose (PBKDF2, thousands of iterations): never on the event loop. The hash
 * is compared in constant time. e NULL: the work of a typical check is done anyway and
 * false returned (an unknown user answers no faster than a known one). */
bool pw_entry_verify(const struct pw_entry *e, const void *password, size_t len);
/* A password_file line for user (no newline): $7$, `iterations` PBKDF2-SHA512 rounds
 * (0: PW_DEFAULT_ITERATIONS), a random 12-byte salt; mosquitto reads it. -1 when out is
 * too small or the user name cannot be stored (':' or a line break in it). */
#define PW_DEFAULT_ITERATIONS 1000
int pw_entry_make(const char *user, const void *password, size_t len, unsigned iterations,
                  char *out, size_t outlen);

/* ---- acl_file ---- */
enum acl_access { ACL_READ = 1, ACL_WRITE = 2 };
struct acl;
struct acl_client;

/* NULL with err "FILE:LINE: why" on any line that is not a comment, `user NAME`,
 * `topic [read|write|readwrite|deny] TOPIC` or `pattern [...] TOPIC`. */
struct acl *acl_load(const char *path, char *err, size_t errlen);
struct acl *acl_ref(struct acl *a);
void acl_unref(struct acl *a); /* NULL is a no-op */
size_t acl_rule_count(const struct acl *a);

/* The rules that apply to one client: its user's (the anonymous block when username
 * is NULL) and the patterns, with %c and %u standing for client_id and username.
 * Holds a reference to a. Small: no per-client copy of the rules. */
struct acl_client *acl_client_new(struct acl *a, const char *username, const char *client_id);
void acl_client_free(struct acl_client *c); /* NULL is a no-op */

/* May the client publish to (ACL_WRITE) or receive (ACL_READ) this topic? A deny rule
 * that matches wins; then any rule granting the access; else no. why (may be NULL):
 * the deciding rule as "FILE:LINE", or NULL when no rule matched. */
bool acl_check(const struct acl_client *c, const char *topic, size_t len, enum acl_access want,
               const char **why);

/* SUBSCRIBE: can the filter match a topic the client may read? */
enum acl_sub {
    ACL_SUB_NONE, /* no topic it matches is readable: refuse it */
    ACL_SUB_SOME, /* some: grant it, and check each message delivered through it */
    ACL_SUB_ALL,  /* every topic it matches is readable: no check per message */
};
enum acl_sub acl_check_subscribe(const struct acl_client *c, const char *filter, size_t len,
                                 const char **why);

#endif
