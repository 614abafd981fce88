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
 * reload source). Returns NULL when a listener cannot be opened (logged, err is "")
 * or its TLS material does not load ("FILE:LINE: ..." in err, errlen bytes). */
struct broker *broker_new(struct event_base *base, struct lq_conf *conf, const char *conf_path,
                          char *err, size_t errlen);
void broker_free(struct broker *b); /* NULL is a no-op */

/* Graceful shutdown: v5 clients get DISCONNECT 0x8B, output is flushed (briefly),
 * then the event loop is asked to exit. */
void broker_shutdown(struct broker *b);

/* Re-read the config file and apply the values that can change live. Returns 0, or
 * -1 when the file does not parse (logged, nothing changed). The options that changed
 * but take effect only on restart ("listener, admin_socket") go into restart
 * (len bytes; "" when none; NULL: only logged). */
int broker_reload(struct broker *b, char *restart, size_t len);

#endif
