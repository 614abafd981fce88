/* SPDX-License-Identifier: MIT
 *
 * retain: the retained-message store. A trie by topic level, so that a subscription
 * with wildcards finds its retained messages by walking the filter, not by scanning
 * every retained topic. Holds one reference on each stored struct msg.
 * Not here: whether retain is enabled (session), message expiry checks (caller,
 * with msg_is_expired).
 */
#ifndef LUNAMQ_RETAIN_H
#define LUNAMQ_RETAIN_H

#include <stddef.h>

struct msg;
struct retain;

struct retain *retain_new(void);
void retain_free(struct retain *r); /* drops every reference; NULL is a no-op */

/* Store m (taking a reference) as the retained message of m's topic, replacing the
 * previous one. A message with an empty payload clears the topic instead
 * [MQTT-3.3.1-6,7] and is not stored. */
void retain_set(struct retain *r, struct msg *m);

/* The retained message of topic (borrowed), or NULL. */
struct msg *retain_get(struct retain *r, const char *topic, size_t len);

/* Remove a topic's retained message, if any (used when it expired). */
void retain_clear(struct retain *r, const char *topic, size_t len);

/* Call fn for every retained message whose topic matches `filter` (the '$' rule
 * applies). fn borrows m; it may not change the store during the walk. */
void retain_match(struct retain *r, const char *filter, size_t flen,
                  void (*fn)(struct msg *m, void *arg), void *arg);

/* Every retained message, in slices (the persistence snapshot): changes between calls
 * are allowed. Each message present from begin to the end is returned once; ones set
 * meanwhile may be returned or not, cleared ones are not returned after they went.
 * One iteration at a time. */
void retain_iter_begin(struct retain *r);
struct msg *retain_iter_next(struct retain *r); /* borrowed; NULL at the end */

size_t retain_count(const struct retain *r);
/* Bytes the store holds: its nodes, level names and messages (shared ones too). */
size_t retain_bytes(const struct retain *r);

#endif
