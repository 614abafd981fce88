/* SPDX-License-Identifier: MIT
 *
 * encode: MQTT packets to bytes. Each encoder describes its body once, as a
 * function over a writer; encode() runs it twice, first to count (the Remaining
 * Length must come first), then to write. v3 forms drop reason codes and
 * properties. */
#include "mqtt_int.h"

typedef void (*body_fn)(struct mqtt_writer *w, const void *ctx);

static size_t
encode(uint8_t first, body_fn fn, const void *ctx, size_t extra, uint8_t *out, size_t cap)
{
    struct mqtt_writer count = {NULL, 0, 0};
    fn(&count, ctx);
    size_t remaining = count.len + extra;
    size_t total = 1 + mqtt_varint_size((uint32_t)remaining) + remaining;
    if (total - extra > cap) return total;
    struct mqtt_writer w = {out, cap, 0};
    put_u8(&w, first);
    put_varint(&w, (uint32_t)remaining);
    fn(&w, ctx);
    return total;
}

/* ---- CONNACK ---- */

struct connack_ctx {
    const struct mqtt_connack *c;
    uint8_t version;
};

static void
body_connack(struct mqtt_writer *w, const void *arg)
{
    const struct connack_ctx *x = arg;
    /* acknowledge flags: Session Present, which 3.1 does not have (reserved, 0) */
    put_u8(w, x->c->session_present && x->version != MQTT_V31 ? 1 : 0);
    put_u8(w, x->c->reason);
    if (x->version == MQTT_V5) mqtt_put_props_block(w, &x->c->props);
}

size_t
mqtt_encode_connack(const struct mqtt_connack *c, uint8_t version, uint8_t *out, size_t cap)
{
    struct connack_ctx x = {c, version};
    return encode(MQTT_CONNACK << 4, body_connack, &x, 0, out, cap);
}

/* ---- PUBLISH ---- */

struct publish_ctx {
    const struct mqtt_publish *p;
    uint8_t version;
    bool payload;
};

static void
body_publish(struct mqtt_writer *w, const void *arg)
{
    const struct publish_ctx *x = arg;
    put_binary(w, x->p->topic);
    if (x->p->qos) put_u16(w, x->p->packet_id);
    if (x->version == MQTT_V5) mqtt_put_props_block(w, &x->p->props);
    if (x->payload) put_bytes(w, x->p->payload.p, x->p->payload.len);
}

static uint8_t
publish_first(const struct mqtt_publish *p)
{
    return (uint8_t)(MQTT_PUBLISH << 4 | (p->dup ? 0x08 : 0) | (p->qos & 3) << 1 |
                     (p->retain ? 1 : 0));
}

size_t
mqtt_encode_publish_head(const struct mqtt_publish *p, uint8_t version, uint8_t *out, size_t cap,
                         size_t *total)
{
    struct publish_ctx x = {p, version, false};
    *total = encode(publish_first(p), body_publish, &x, p->payload.len, out, cap);
    return *total - p->payload.len;
}

size_t
mqtt_encode_publish(const struct mqtt_publish *p, uint8_t version, uint8_t *out, size_t cap)
{
    struct publish_ctx x = {p, version, true};
    return encode(publish_first(p), body_publish, &x, 0, out, cap);
}

/* ---- PUBACK, PUBREC, PUBREL, PUBCOMP ---- */

struct ack_ctx {
    const struct mqtt_ack *a;
    uint8_t version;
};

static void
body_ack(struct mqtt_writer *w, const void *arg)
{
    const struct ack_ctx *x = arg;
    put_u16(w, x->a->packet_id);
    if (x->version != MQTT_V5) return;
    bool props = mqtt_props_size(&x->a->props) > 0;
    if (x->a->reason || props) put_u8(w, x->a->reason); /* 2-byte form otherwise (3.4.2.1) */
    if (props) mqtt_put_props_block(w, &x->a->props);
}

size_t
mqtt_encode_ack(uint8_t type, const struct mqtt_ack *a, uint8_t version, uint8_t *out, size_t cap)
{
    struct ack_ctx x = {a, version};
    uint8_t first = (uint8_t)(type << 4 | (type == MQTT_PUBREL ? 2 : 0));
    return encode(first, body_ack, &x, 0, out, cap);
}

/* ---- SUBACK, UNSUBACK ---- */

struct suback_ctx {
    const struct mqtt_suback *s;
    uint8_t type;
    uint8_t version;
};

static void
body_suback(struct mqtt_writer *w, const void *arg)
{
    const struct suback_ctx *x = arg;
    put_u16(w, x->s->packet_id);
    if (x->version == MQTT_V5) {
        mqtt_put_props_block(w, &x->s->props);
        put_bytes(w, x->s->codes, x->s->count);
        return;
    }
    if (x->type == MQTT_UNSUBACK) return; /* v3 UNSUBACK has no payload */
    for (size_t i = 0; i < x->s->count; i++)
        put_u8(w, x->s->codes[i] >= 0x80 ? 0x80 : x->s->codes[i]);
}

size_t
mqtt_encode_suback(uint8_t type, const struct mqtt_suback *s, uint8_t version, uint8_t *out,
                   size_t cap)
{
    struct suback_ctx x = {s, type, version};
    return encode((uint8_t)(type << 4), body_suback, &x, 0, out, cap);
}

/* ---- DISCONNECT, PINGRESP, PINGREQ ---- */

struct disconnect_ctx {
    const struct mqtt_disconnect *d;
    uint8_t version;
};

static void
body_disconnect(struct mqtt_writer *w, const void *arg)
{
    const struct disconnect_ctx *x = arg;
    if (x->version != MQTT_V5) return;
    bool props = mqtt_props_size(&x->d->props) > 0;
    if (x->d->reason || props) put_u8(w, x->d->reason);
    if (props) mqtt_put_props_block(w, &x->d->props);
}

size_t
mqtt_encode_disconnect(const struct mqtt_disconnect *d, uint8_t version, uint8_t *out, size_t cap)
{
    struct disconnect_ctx x = {d, version};
    return encode(MQTT_DISCONNECT << 4, body_disconnect, &x, 0, out, cap);
}

static size_t
encode_empty(uint8_t first, uint8_t *out, size_t cap)
{
    if (cap >= 2) {
        out[0] = first;
        out[1] = 0;
    }
    return 2;
}

size_t
mqtt_encode_pingresp(uint8_t *out, size_t cap)
{
    return encode_empty(MQTT_PINGRESP << 4, out, cap);
}

size_t
mqtt_encode_pingreq(uint8_t *out, size_t cap)
{
    return encode_empty(MQTT_PINGREQ << 4, out, cap);
}

/* ---- client side: CONNECT, SUBSCRIBE, UNSUBSCRIBE ---- */

static void
body_connect(struct mqtt_writer *w, const void *arg)
{
    const struct mqtt_connect *c = arg;
    uint8_t level = c->version & 0x7f; /* the top bit: try_private */
    bool v31 = level == MQTT_V31;
    put_binary(w, (struct lq_bytes){(const uint8_t *)(v31 ? "MQIsdp" : "MQTT"), v31 ? 6 : 4});
    put_u8(w, (uint8_t)(c->version | (c->bridge ? 0x80 : 0)));
    uint8_t f =
        (uint8_t)((c->clean_start ? 0x02 : 0) | (c->will ? 0x04 : 0) |
                  (c->will ? (c->will_qos & 3) << 3 : 0) | (c->will && c->will_retain ? 0x20 : 0) |
                  (c->has_password ? 0x40 : 0) | (c->has_username ? 0x80 : 0));
    put_u8(w, f);
    put_u16(w, c->keep_alive);
    if (level == MQTT_V5) mqtt_put_props_block(w, &c->props);
    put_binary(w, c->client_id);
    if (c->will) {
        if (level == MQTT_V5) mqtt_put_props_block(w, &c->will_props);
        put_binary(w, c->will_topic);
        put_binary(w, c->will_payload);
    }
    if (c->has_username) put_binary(w, c->username);
    if (c->has_password) put_binary(w, c->password);
}

size_t
mqtt_encode_connect(const struct mqtt_connect *c, uint8_t *out, size_t cap)
{
    return encode(MQTT_CONNECT << 4, body_connect, c, 0, out, cap);
}

struct sub_ctx {
    uint16_t packet_id;
    const struct mqtt_props *props;
    const struct mqtt_sub_entry *e;
    const struct lq_bytes *filters;
    size_t n;
    uint8_t version;
};

static void
body_subscribe(struct mqtt_writer *w, const void *arg)
{
    const struct sub_ctx *x = arg;
    put_u16(w, x->packet_id);
    if (x->version == MQTT_V5) {
        struct mqtt_props none;
        memset(&none, 0, sizeof(none));
        mqtt_put_props_block(w, x->props ? x->props : &none);
    }
    for (size_t i = 0; i < x->n; i++) {
        if (x->filters) {
            put_binary(w, x->filters[i]);
            continue;
        }
        const struct mqtt_sub_entry *e = &x->e[i];
        put_binary(w, e->filter);
        uint8_t o = (uint8_t)(e->qos & 3);
        if (x->version == MQTT_V5)
            o = (uint8_t)(o | (e->no_local ? 0x04 : 0) | (e->retain_as_published ? 0x08 : 0) |
                          (e->retain_handling & 3) << 4);
        put_u8(w, o);
    }
}

size_t
mqtt_encode_subscribe(uint16_t packet_id, const struct mqtt_props *props,
                      const struct mqtt_sub_entry *e, size_t n, uint8_t version, uint8_t *out,
                      size_t cap)
{
    struct sub_ctx x = {packet_id, props, e, NULL, n, version};
    return encode(MQTT_SUBSCRIBE << 4 | 2, body_subscribe, &x, 0, out, cap);
}

size_t
mqtt_encode_unsubscribe(uint16_t packet_id, const struct mqtt_props *props,
                        const struct lq_bytes *filters, size_t n, uint8_t version, uint8_t *out,
                        size_t cap)
{
    struct sub_ctx x = {packet_id, props, NULL, filters, n, version};
    return encode(MQTT_UNSUBSCRIBE << 4 | 2, body_subscribe, &x, 0, out, cap);
}
