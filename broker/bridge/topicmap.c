/* SPDX-License-Identifier: MIT
 *
 * topicmap: a bridge's topics and mosquitto's prefix rules. `topic P DIR QOS L R`
 * subscribes to L+P on the side the messages come from; a message's topic then loses
 * the prefix of the side it came from and gains the other side's. The first topic
 * line in the file whose filter matches a message decides its mapping. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bridge_int.h"
#include "conf.h"
#include "lq.h"
#include "topic.h"

#define TOPIC_MAX 65535 /* the longest topic a packet carries */

static char mapped[TOPIC_MAX + 1]; /* the result of the last mapping: one event loop */

static char *
join(const char *prefix, const char *pattern)
{
    size_t a = strlen(prefix), b = strlen(pattern);
    char *s = lq_xmalloc(a + b + 1);
    memcpy(s, prefix, a);
    memcpy(s + a, pattern, b + 1);
    return s;
}

int
btopics_make(struct bridge *br, char *err, size_t errlen)
{
    const struct bridge_conf *bc = br->bc;
    br->topics = lq_xcalloc(bc->ntopics ? bc->ntopics : 1, sizeof(*br->topics));
    for (size_t i = 0; i < bc->ntopics; i++) {
        const struct bridge_topic *t = &bc->topics[i];
        struct btopic *x = &br->topics[br->ntopics++];
        x->local_prefix = t->local_prefix ? t->local_prefix : "";
        x->remote_prefix = t->remote_prefix ? t->remote_prefix : "";
        x->llen = (uint16_t)strlen(x->local_prefix);
        x->rlen = (uint16_t)strlen(x->remote_prefix);
        x->dir = t->dir;
        x->qos = t->qos;
        x->local_filter = join(x->local_prefix, t->pattern);
        x->remote_filter = join(x->remote_prefix, t->pattern);
        if (!topic_filter_is_valid(x->local_filter, strlen(x->local_filter)) ||
            !topic_filter_is_valid(x->remote_filter, strlen(x->remote_filter))) {
            snprintf(err, errlen, "%s: topic \"%s\" with its prefixes is not a valid filter", t->at,
                     t->pattern);
            return -1;
        }
    }
    return 0;
}

void
btopics_free(struct bridge *br)
{
    for (size_t i = 0; i < br->ntopics; i++) {
        free(br->topics[i].local_filter);
        free(br->topics[i].remote_filter);
    }
    free(br->topics);
    br->topics = NULL;
    br->ntopics = 0;
}

/* t matched `prefix + pattern` (the prefix flen bytes long): the same topic under
 * `to`. A filter ending in
 * "/#" also matches its parent ("a/#" matches "a"): that topic maps to the other
 * prefix without its last '/'. */
static const char *
swap_prefix(const char *t, size_t len, size_t flen, const char *to, size_t tlen, size_t *out_len)
{
    if (flen == 0 && tlen == 0) { /* no remapping: the topic itself */
        *out_len = len;
        return t;
    }
    size_t rest = 0;
    const char *tail = "";
    if (len >= flen) {
        tail = t + flen;
        rest = len - flen;
    } else if (tlen && to[tlen - 1] == '/') { /* the parent of "prefix/#" */
        tlen--;
    }
    if (tlen + rest > TOPIC_MAX || (tlen + rest == 0)) return NULL;
    memcpy(mapped, to, tlen);
    memcpy(mapped + tlen, tail, rest);
    mapped[tlen + rest] = '\0';
    *out_len = tlen + rest;
    return mapped;
}

const char *
bridge_map_out(struct bridge *br, const char *t, size_t len, size_t *out_len)
{
    for (size_t i = 0; i < br->ntopics; i++) {
        const struct btopic *x = &br->topics[i];
        if (!(x->dir & BRIDGE_DIR_OUT) ||
            !topic_matches(x->local_filter, strlen(x->local_filter), t, len))
            continue;
        const char *r = swap_prefix(t, len, x->llen, x->remote_prefix, x->rlen, out_len);
        if (r) {
            br->msgs_out++;
            br->active_ms = lq_now_ms();
        }
        return r;
    }
    return NULL;
}

const char *
bridge_map_in(struct bridge *br, const char *t, size_t len, size_t *out_len)
{
    for (size_t i = 0; i < br->ntopics; i++) {
        const struct btopic *x = &br->topics[i];
        if (!(x->dir & BRIDGE_DIR_IN) ||
            !topic_matches(x->remote_filter, strlen(x->remote_filter), t, len))
            continue;
        return swap_prefix(t, len, x->rlen, x->local_prefix, x->llen, out_len);
    }
    return NULL;
}

bool
bridge_local_filter(const struct bridge *br, size_t k, const char **filter, uint8_t *qos)
{
    for (size_t i = 0; i < br->ntopics; i++) {
        const struct btopic *x = &br->topics[i];
        if (!(x->dir & BRIDGE_DIR_OUT)) continue;
        if (k-- == 0) {
            *filter = x->local_filter;
            *qos = x->qos;
            return true;
        }
    }
    return false;
}
