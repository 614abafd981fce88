/* SPDX-License-Identifier: MIT
 *
 * msg: refcounted immutable messages. One allocation per message: the struct, then
 * topic, properties and payload in data[]. */
#include <stdlib.h>
#include <string.h>

#include "lq.h"
#include "msg.h"

struct msg *
msg_new(const struct msg_init *in)
{
    size_t n =
        sizeof(struct msg) + in->topic_len + 1 + in->props_len + (in->adopt ? 0 : in->payload_len);
    struct msg *m = lq_xmalloc(n);
    m->refs = 1;
    m->qos = in->qos;
    m->retain = in->retain;
    m->has_expiry = in->has_expiry;
    m->topic_len = (uint16_t)in->topic_len;
    m->props_len = (uint32_t)in->props_len;
    m->payload_len = (uint32_t)in->payload_len;
    m->store_gen = 0;
    m->store_id = 0;
    m->created_ms = in->created_ms ? in->created_ms : lq_now_ms();
    m->expire_at_ms = !in->has_expiry    ? 0
                      : in->expire_at_ms ? in->expire_at_ms
                                         : m->created_ms + (uint64_t)in->expiry_interval * 1000;
    m->origin = in->origin;
    m->topic = (char *)m->data;
    memcpy(m->topic, in->topic, in->topic_len);
    m->topic[in->topic_len] = '\0';
    m->props = m->data + in->topic_len + 1;
    if (in->props_len) memcpy(m->props, in->props, in->props_len);
    m->owned = in->adopt;
    if (in->adopt) {
        m->payload = (uint8_t *)(uintptr_t)in->payload;
    } else {
        m->payload = m->props + in->props_len;
        if (in->payload_len) memcpy(m->payload, in->payload, in->payload_len);
    }
    return m;
}

void
msg_unref(struct msg *m)
{
    if (!m) return;
    if (--m->refs == 0) { /* last reference? */
        free(m->owned);
        free(m);
    }
}

uint32_t
msg_expiry_left(const struct msg *m, uint64_t now_ms)
{
    if (!m->has_expiry || now_ms >= m->expire_at_ms) return 0;
    uint64_t left = (m->expire_at_ms - now_ms + 999) / 1000;
    return left > UINT32_MAX ? UINT32_MAX : (uint32_t)left;
}
