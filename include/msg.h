/* SPDX-License-Identifier: MIT
 *
 * msg: one published application message, immutable once built and shared by
 * reference: the retained store and every subscriber queue hold references, the
 * payload is never copied per subscriber.
 *
 * The body is public because it is a read-only value: only msg.c writes it, once, in
 * msg_new(). Everyone else reads fields and calls msg_ref/msg_unref.
 */
#ifndef LUNAMQ_MSG_H
#define LUNAMQ_MSG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct msg {
    uint32_t refs;
    uint8_t qos;     /* as published */
    bool retain;     /* as published */
    bool has_expiry; /* message expiry interval given */
    uint16_t topic_len;
    uint32_t props_len; /* forwardable properties, encoded (see below) */
    uint32_t payload_len;
    /* persistence (session/persist.c writes these two, nothing else does): the id of
     * its record in the journal (0: not written) and the journal generation it was
     * written in (a compaction starts a new one; an older record may be gone) */
    uint32_t store_gen;
    uint64_t store_id;
    uint64_t expire_at_ms; /* lq_now_ms() deadline when has_expiry */
    uint64_t created_ms;   /* lq_now_ms() when built (retained age) */
    const void *origin;    /* publishing session, for no-local; never dereferenced */
    char *topic;           /* NUL-terminated, inside data[] */
    uint8_t *props;        /* inside data[] */
    uint8_t *payload;      /* inside data[], or inside owned */
    void *owned;           /* NULL, or the received packet the payload lies in */
    uint8_t data[];
};

/* Properties kept in `props` are those forwarded unchanged to subscribers
 * [MQTT-3.3.2-15..20]: payload format indicator, content type, response topic,
 * correlation data and user properties (order kept), already encoded. Message expiry
 * is rewritten on every delivery and topic alias / subscription ids are per
 * connection, so they are not in `props`. */
struct msg_init {
    const char *topic;
    size_t topic_len;
    const uint8_t *payload;
    size_t payload_len;
    const uint8_t *props; /* encoded forwardable properties, or NULL */
    size_t props_len;
    uint8_t qos;
    bool retain;
    bool has_expiry;
    uint32_t expiry_interval; /* seconds, with has_expiry */
    const void *origin;
    void *adopt; /* NULL, or a malloc'd block holding payload: kept, not copied */
    /* recovery: lq_now_ms() values to use instead of now (0: now) */
    uint64_t created_ms, expire_at_ms;
};

/* New message with one reference; copies everything it is given but an adopted
 * payload (a large packet read straight into its own block: see conn_take_packet). */
struct msg *msg_new(const struct msg_init *in);
static inline struct msg *
msg_ref(struct msg *m)
{
    m->refs++;
    return m;
}
void msg_unref(struct msg *m); /* frees on the last reference; NULL is a no-op */

/* Seconds left before expiry (rounded up, at least 1 while not expired), for the
 * Message Expiry Interval sent on delivery [MQTT-3.3.2-6]. */
uint32_t msg_expiry_left(const struct msg *m, uint64_t now_ms);
static inline bool
msg_is_expired(const struct msg *m, uint64_t now_ms)
{
    return m->has_expiry && now_ms >= m->expire_at_ms;
}

/* Bytes the message occupies (for queue byte limits). */
static inline size_t
msg_size(const struct msg *m)
{
    return sizeof(*m) + m->topic_len + 1 + m->props_len + m->payload_len;
}

#endif
