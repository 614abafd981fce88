/* SPDX-License-Identifier: MIT
 *
 * broker: the root object. Made once in main() and passed down; owns the listeners,
 * the session registry, the subscription tree and the retained store. */
#ifndef LUNAMQ_BROKER_H
#define LUNAMQ_BROKER_H

#include <stddef.h>

struct event_base;
struct lq_conf;
struct broker;

/* Takes ownership of *conf (moved out: *conf is reset). conf_path may be NULL (no
 * reload source). Does what may need root: binds the listeners (connections are
 * refused until broker_start), loads their TLS material, makes the admin socket and
 * the metrics listener. Returns NULL when a listener cannot be bound (logged, err is
 * "") or its TLS material does not load ("FILE:LINE: ..." in err, errlen bytes). */
struct broker *broker_new(struct event_base *base, struct lq_conf *conf, const char *conf_path,
                          char *err, size_t errlen);
/* The path of the admin socket broker_new made, or NULL. */
const char *broker_admin_socket(const struct broker *b);
/* The rest, with the privileges the broker keeps: hooks, password and ACL files, the
 * cluster, persistence (recovery), bridges; then the listeners accept. Returns 0, or
 * -1 with the reason in err ("" when only logged). Nothing is served before it returns. */
int broker_start(struct broker *b, char *err, size_t errlen);
/* lunamq -t: load what broker_new and broker_start would read from files (each TLS
 * listener's and bridge's material, password and ACL files) without opening anything.
 * Returns 0, or -1 with one line per problem in err. */
int broker_check(const struct lq_conf *conf, char *err, size_t errlen);
void broker_free(struct broker *b); /* NULL is a no-op */

/* Graceful shutdown: v5 clients get DISCONNECT 0x8B, output is flushed (briefly),
 * then the event loop is asked to exit. systemd hears STOPPING=1 (sdnotify.h). */
void broker_shutdown(struct broker *b);

/* Re-read the config file and apply the values that can change live. Returns 0, or
 * -1 when the file does not parse (logged, nothing changed). The options that changed
 * but take effect only on restart ("listener, admin_socket") go into restart
 * (len bytes; "" when none; NULL: only logged). systemd hears RELOADING=1, then
 * READY=1. */
int broker_reload(struct broker *b, char *restart, size_t len);

#endif
