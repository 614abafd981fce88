/* SPDX-License-Identifier: MIT
 *
 * topic: topic name / filter syntax (section 4.7) and the subscription tree.
 *
 * The tree indexes subscriptions by topic level. It owns its nodes and the
 * subscription records; a subscriber is an opaque `void *owner` (a session) that the
 * tree never dereferences. Matching cost grows with topic depth (and the number of
 * matching subscriptions), never with the total number of subscribers.
 * Shared subscriptions ($share/GROUP/FILTER) live in the tree as groups at the
 * filter's node; topic_tree_match reports a group once and the caller picks a member
 * with sub_group_pick(). Not here: delivery, QoS, sessions.
 */
#ifndef LUNAMQ_TOPIC_H
#define LUNAMQ_TOPIC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* A topic name (PUBLISH): non-empty, no '+' or '#' [MQTT-3.3.2-2, 4.7.0-1]. UTF-8
 * validity is the codec's job and is assumed here. */
bool topic_name_is_valid(const char *t, size_t len);

/* A topic filter (SUBSCRIBE): non-empty; '#' only last and alone in its level; '+'
 * alone in its level [MQTT-4.7.1-1..2]. For "$share/..." use topic_parse_shared. */
bool topic_filter_is_valid(const char *f, size_t len);

/* Is topic name t under $SYS ("$SYS" or "$SYS/...")? Only the broker publishes there:
 * clients and hooks may not (mosquitto refuses them too). */
bool topic_is_sys(const char *t, size_t len);

/* Has topic name or filter t more than max levels ('/' + 1)? max 0: no limit. Every
 * level costs a node of ~200 bytes in the subscription tree or the retained store,
 * so a deep topic (64 KB of '/') would cost 175 times its size: max_topic_levels
 * bounds that for what clients, wills and hooks publish and subscribe. */
bool topic_is_too_deep(const char *t, size_t len, uint32_t max);

/* "$share/GROUP/FILTER": returns 1 and sets group/filter views when f is a shared
 * subscription, 0 when it is not one, -1 when it starts with "$share/" but is not
 * valid (empty or wildcard group, no filter, invalid filter) [MQTT-4.8.2-1,2]. */
int topic_parse_shared(const char *f, size_t len, const char **group, size_t *group_len,
                       const char **filter, size_t *filter_len);

/* Does `filter` match topic `name`? Implements the '$' rule [MQTT-4.7.2-1]. */
bool topic_matches(const char *filter, size_t flen, const char *name, size_t nlen);

/* Options of one subscription, as given in SUBSCRIBE. */
struct sub_opts {
    uint8_t qos;
    bool no_local;
    bool retain_as_published;
    uint8_t retain_handling : 2;
    /* acl_file: not every topic the filter matches is readable by the subscriber; each
     * message delivered through it is checked (set by the session layer, not stored).
     * A bit beside retain_handling: the options stay 8 bytes in every tree entry. */
    uint8_t acl_check : 1;
    uint32_t sub_id; /* 0: none */
};

_Static_assert(sizeof(struct sub_opts) == 8, "sub_opts is in every subscription entry");

struct topic_tree;
struct sub_group; /* the members of one $share group on one filter */

struct topic_tree *topic_tree_new(void);
void topic_tree_free(struct topic_tree *t); /* NULL is a no-op */

/* Add or replace (owner, filter[, group]) with the options `o`. group == NULL for a
 * plain subscription. Returns 1 when it was new, 0 when it replaced an existing one.
 * The filter must be valid (checked by the caller). */
int topic_tree_add(struct topic_tree *t, const char *filter, size_t flen, const char *group,
                   size_t glen, void *owner, const struct sub_opts *o);

/* Remove (owner, filter[, group]). Returns 0, or -1 when there was no such
 * subscription. Empty nodes are freed. */
int topic_tree_remove(struct topic_tree *t, const char *filter, size_t flen, const char *group,
                      size_t glen, void *owner);

/* Called for every match of topic_tree_match: either a plain subscription (g == NULL,
 * owner and o set) or a shared group (g set, owner == NULL, o == NULL). */
typedef void (*topic_match_fn)(void *owner, const struct sub_opts *o, struct sub_group *g,
                               void *arg);
void topic_tree_match(struct topic_tree *t, const char *name, size_t nlen, topic_match_fn fn,
                      void *arg);

/* The shared group `group` on exactly `filter` (not what matches it); NULL: none. */
struct sub_group *topic_tree_group(struct topic_tree *t, const char *filter, size_t flen,
                                   const char *group, size_t glen);

/* Pick the next member of a group, round robin, skipping members for which
 * usable(owner, arg) returns false (NULL usable: any). Returns false when no
 * member is usable. */
bool sub_group_pick(struct sub_group *g, bool (*usable)(void *owner, void *arg), void *arg,
                    void **owner, const struct sub_opts **o);

/* The k-th member of g counted from the one sub_group_pick tries next, without moving
 * the round robin, and the group's name (nlen bytes); false when k is past the last
 * member. For lunamq-ctl subscribers. */
bool sub_group_peek(const struct sub_group *g, uint32_t k, void **owner, const char **name,
                    size_t *nlen);
/* Number of subscriptions (plain + shared members) in the tree. */
size_t topic_tree_count(const struct topic_tree *t);
/* Bytes its nodes, level names and subscription records hold (lunamq-ctl stats). */
size_t topic_tree_bytes(const struct topic_tree *t);

#endif
