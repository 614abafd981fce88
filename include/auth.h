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
 * not `user:$7$...` / `user:$6$...`; blank lines and `#` comments are skipped. Salts of
 * 12 (mosquitto 2.0) or 64 bytes (2.1), 1 to PW_MAX_ITERATIONS iterations. The user
 * name is trimmed of blanks, as mosquitto does; a user listed twice: the last line
 * wins. Stricter than mosquitto, which logs a bad line and drops that user; 2.1's
 * $argon2id$ is refused with a clear error. */
#define PW_MAX_ITERATIONS 10000000u
struct pwfile *pwfile_load(const char *path, char *err, size_t errlen);
struct pwfile *pwfile_ref(struct pwfile *f);
void pwfile_unref(struct pwfile *f); /* NULL is a no-op */
size_t pwfile_count(const struct pwfile *f);
/* The entry of a user; NULL: none. Valid while the caller holds a reference. */
const struct pw_entry *pwfile_find(const struct pwfile *f, const char *user, size_t len);
/* Slow on purpose (PBKDF2, thousands of iterations): never on the event loop. The hash
 * is compared in constant time. All len bytes are hashed (mosquitto stops at a NUL).
 * e NULL: the work of a check with PW_DEFAULT_ITERATIONS is done anyway and false
 * returned (an unknown user answers about as fast as a known one). */
bool pw_entry_verify(const struct pw_entry *e, const void *password, size_t len);
/* pwfile_find + pw_entry_verify, with an unknown user checked against a decoy that
 * costs what the file's most common entry costs (its kind and iteration count), so
 * that a file of 101-iteration entries does not answer faster for a known user. The
 * better call for the session layer. Same thread rules as pw_entry_verify. */
bool pwfile_verify(const struct pwfile *f, const char *user, size_t ulen, const void *password,
                   size_t len);
/* A password_file line for user (no newline): $7$, `iterations` PBKDF2-SHA512 rounds
 * (0: PW_DEFAULT_ITERATIONS), a random 12-byte salt (getrandom); mosquitto 2.0 and 2.1
 * read it. Returns its length, or -1 when out is too small, iterations is above
 * PW_MAX_ITERATIONS, the salt cannot be drawn, or the user name cannot be stored and
 * read back (empty, longer than 65535 bytes, a ':' or control character, a blank at
 * either end, a '#' first). */
#define PW_DEFAULT_ITERATIONS 1000
int pw_entry_make(const char *user, const void *password, size_t len, unsigned iterations,
                  char *out, size_t outlen);
/* Can pw_entry_make store this user name (the rules above)? */
bool pw_user_is_storable(const char *user);

/* ---- acl_file ----
 *
 * mosquitto 2.0's acl_file (src/security_default.c), same format and answers:
 * - `#` comments and blank lines; `user NAME` (the rest of the line, trimmed: spaces
 *   inside are part of it) starts that user's block; rules before the first `user`
 *   line are the anonymous clients' (no username). Two blocks of one user add up.
 * - `topic [read|write|readwrite|deny] TOPIC`: TOPIC is the rest of the line (spaces
 *   included), a valid filter; the default access is readwrite.
 * - `pattern [ACCESS] TOPIC`: for every client; %c is its client id, %u its username,
 *   substituted as text anywhere in TOPIC (so "dev-%c" works, and an id holding '/'
 *   spans levels, as in 2.0; 2.1 compares only a whole level). A pattern with %u does
 *   not apply to an anonymous client. A pattern without %c or %u applies to everyone.
 *
 * Precedence, per check (mosquitto's order):
 *   1. the client's block (its user's, or the anonymous block): a matching deny
 *      refuses; else a matching rule granting the access allows;
 *   2. if any pattern exists and the username or client id holds '+' or '#':
 *      refused (it would widen its own patterns);
 *   3. the patterns: a matching deny refuses; else a granting one allows;
 *   4. refused. So a user's own grant beats a pattern's deny.
 * `$` topics: a rule whose first level is a wildcard ("#", "+/...") does not match a
 * topic starting with '$' (MQTT-4.7.2-1, and mosquitto's explicit check): $SYS needs
 * a rule that names it ("topic read $SYS/#").
 *
 * Where we differ, on purpose: a missing topic after the access ("topic read") is an
 * error (mosquitto grants readwrite on a topic named "read"); fields may be separated
 * by tabs and an indented '#' is a comment (mosquitto: spaces only, column 1); a rule
 * deeper than ACL_MAX_LEVELS levels is refused (matching recurses per level). */
enum acl_access { ACL_READ = 1, ACL_WRITE = 2 };
#define ACL_MAX_LEVELS 1024
struct acl;
struct acl_client;

/* NULL with err "FILE:LINE: why" on any line that is not a comment, `user NAME`,
 * `topic [read|write|readwrite|deny] TOPIC` or `pattern [...] TOPIC`, or a TOPIC that is
 * not a valid filter; "FILE: why" when it cannot be read. Rules are compiled into one
 * topic tree per user block and one for the patterns. */
struct acl *acl_load(const char *path, char *err, size_t errlen);
struct acl *acl_ref(struct acl *a);
void acl_unref(struct acl *a); /* NULL is a no-op */
size_t acl_rule_count(const struct acl *a);

/* The rules that apply to one client: its user's (the anonymous block when username
 * is NULL) and the patterns, with %c and %u standing for client_id and username.
 * Holds a reference to a. Small: a pointer to the user's compiled rules and copies of
 * the two strings; no per-client copy of the rules. client_id NULL: no pattern
 * applies (mosquitto refuses then). */
struct acl_client *acl_client_new(struct acl *a, const char *username, const char *client_id);
void acl_client_free(struct acl_client *c); /* NULL is a no-op */

/* May the client publish to (ACL_WRITE) or receive (ACL_READ) this topic, a valid topic
 * name? The precedence above. Does not allocate; cost grows with the topic's depth and
 * the wildcard rules on its path, not with the number of rules. why (may be NULL): the
 * deciding rule as "FILE:LINE" (the first such line of the file), "FILE: + or # in the
 * username or client id" for step 2, or NULL when no rule matched. The string lives as
 * long as the acl. */
bool acl_check(const struct acl_client *c, const char *topic, size_t len, enum acl_access want,
               const char **why);

/* SUBSCRIBE: can the filter match a topic the client may read? */
enum acl_sub {
    ACL_SUB_NONE, /* no topic it matches is readable: refuse it */
    ACL_SUB_SOME, /* some: grant it, and check each message delivered through it */
    ACL_SUB_ALL,  /* every topic it matches is readable: no check per message */
};
/* filter: a valid filter, without a "$share/GROUP/" prefix. Not on the hot path: walks
 * the client's rules (patterns substituted) and allocates. NONE only when no topic of
 * the filter can be readable (a deny that could decide covers it, or no read grant
 * that could decide intersects it); ALL only when every one is (a read grant covers it
 * and no deny that could decide intersects it); SOME otherwise, which is always safe.
 * The answer holds for this acl: after a reload, ask again. why: the deciding rule
 * (NONE, ALL), one granting rule (SOME), or as for acl_check. */
enum acl_sub acl_check_subscribe(const struct acl_client *c, const char *filter, size_t len,
                                 const char **why);

/* Filter algebra, with the '$' rule (a leading wildcard matches no '$' topic):
 * does some topic match both a and b? does every topic f matches also match g? */
bool acl_filter_intersects(const char *a, size_t alen, const char *b, size_t blen);
bool acl_filter_covers(const char *g, size_t glen, const char *f, size_t flen);

#endif
