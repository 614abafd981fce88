/* SPDX-License-Identifier: MIT
 *
 * decode: MQTT packets from bytes. Every packet body is read with the cursor of
 * mqtt_int.h, so no read can pass the end; every decoder checks that nothing is
 * left over. Views in the output point into the caller's buffer. */
#include "mqtt_int.h"

#define P(id) MQTT_PBIT(MQTT_PROP_##id)
#define PROPS_CONNECT                                                                           \
    (P(SESSION_EXPIRY) | P(RECEIVE_MAXIMUM) | P(MAXIMUM_PACKET_SIZE) | P(TOPIC_ALIAS_MAXIMUM) | \
     P(REQUEST_RESPONSE_INFO) | P(REQUEST_PROBLEM_INFO) | P(USER_PROPERTY) | P(AUTH_METHOD) |   \
     P(AUTH_DATA))
#define PROPS_WILL                                                                                 \
    (P(WILL_DELAY) | P(PAYLOAD_FORMAT) | P(MESSAGE_EXPIRY) | P(CONTENT_TYPE) | P(RESPONSE_TOPIC) | \
     P(CORRELATION_DATA) | P(USER_PROPERTY))
#define PROPS_PUBLISH                                                             \
    (P(PAYLOAD_FORMAT) | P(MESSAGE_EXPIRY) | P(TOPIC_ALIAS) | P(RESPONSE_TOPIC) | \
     P(CORRELATION_DATA) | P(USER_PROPERTY) | P(CONTENT_TYPE))
#define PROPS_ACK         (P(REASON_STRING) | P(USER_PROPERTY))
#define PROPS_SUBSCRIBE   (P(SUBSCRIPTION_ID) | P(USER_PROPERTY))
#define PROPS_UNSUBSCRIBE (P(USER_PROPERTY))
#define PROPS_DISCONNECT \
    (P(SESSION_EXPIRY) | P(REASON_STRING) | P(USER_PROPERTY) | P(SERVER_REFERENCE))
#define PROPS_AUTH (P(AUTH_METHOD) | P(AUTH_DATA) | P(REASON_STRING) | P(USER_PROPERTY))
#define PROPS_CONNACK                                                                             \
    (P(SESSION_EXPIRY) | P(RECEIVE_MAXIMUM) | P(MAXIMUM_QOS) | P(RETAIN_AVAILABLE) |              \
     P(MAXIMUM_PACKET_SIZE) | P(ASSIGNED_CLIENT_ID) | P(TOPIC_ALIAS_MAXIMUM) | P(REASON_STRING) | \
     P(USER_PROPERTY) | P(WILDCARD_SUB_AVAILABLE) | P(SUB_ID_AVAILABLE) |                         \
     P(SHARED_SUB_AVAILABLE) | P(SERVER_KEEP_ALIVE) | P(RESPONSE_INFO) | P(SERVER_REFERENCE) |    \
     P(AUTH_METHOD) | P(AUTH_DATA))

int
mqtt_frame_header(const uint8_t *buf, size_t len, uint8_t *type_flags, uint32_t *remaining,
                  size_t *header_len)
{
    if (len < 2) return 0;
    uint32_t v = 0;
    for (size_t i = 0; i < 4; i++) {
        if (1 + i >= len) return 0; /* need more bytes */
        uint8_t b = buf[1 + i];
        v |= (uint32_t)(b & 0x7f) << (7 * i);
        if (!(b & 0x80)) {
            *type_flags = buf[0];
            *remaining = v;
            *header_len = 2 + i;
            return 1;
        }
    }
    return -1; /* a fifth length byte */
}

uint8_t
mqtt_connect_version(const uint8_t *buf, size_t len)
{
    uint8_t tf;
    uint32_t rem;
    size_t hl;
    if (mqtt_frame_header(buf, len, &tf, &rem, &hl) <= 0 || tf != (MQTT_CONNECT << 4)) return 0;
    static const uint8_t mqtt[] = {0, 4, 'M', 'Q', 'T', 'T'},
                         mqisdp[] = {0, 6, 'M', 'Q', 'I', 's', 'd', 'p'};
    const uint8_t *p = buf + hl;
    size_t n = len - hl;
    if (n > sizeof(mqtt) && memcmp(p, mqtt, sizeof(mqtt)) == 0) {
        uint8_t v = p[sizeof(mqtt)];
        if (v == (MQTT_V311 | 0x80)) v = MQTT_V311; /* try_private */
        return v == MQTT_V311 || v == MQTT_V5 ? v : 0;
    }
    if (n > sizeof(mqisdp) && memcmp(p, mqisdp, sizeof(mqisdp)) == 0)
        return (p[sizeof(mqisdp)] & 0x7f) == MQTT_V31 ? MQTT_V31 : 0;
    return 0;
}

static bool
is_wildcard_free(struct lq_bytes t)
{
    for (size_t i = 0; i < t.len; i++)
        if (t.p[i] == '+' || t.p[i] == '#') return false;
    return true;
}

static bool
bytes_eq(struct lq_bytes b, const char *s, size_t n)
{
    return b.len == n && memcmp(b.p, s, n) == 0;
}

static uint8_t
decode_will(struct mqtt_cursor *c, uint8_t version, struct mqtt_connect *out)
{
    uint8_t rc;
    if (version == MQTT_V5 && (rc = mqtt_read_props(c, PROPS_WILL, &out->will_props))) return rc;
    if (read_utf8(c, &out->will_topic)) return MQTT_RC_MALFORMED_PACKET;
    if (read_binary(c, &out->will_payload)) return MQTT_RC_MALFORMED_PACKET;
    return MQTT_RC_SUCCESS;
}

uint8_t
mqtt_decode_connect(uint8_t flags, const uint8_t *body, size_t len, struct mqtt_connect *out)
{
    memset(out, 0, sizeof(*out));
    struct mqtt_cursor c = {body, len, 0};
    if (flags) return MQTT_RC_MALFORMED_PACKET; /* [MQTT-2.1.3-1] */
    struct lq_bytes name;
    uint8_t level, cf;
    if (read_utf8(&c, &name) || read_u8(&c, &level)) return MQTT_RC_MALFORMED_PACKET;
    out->bridge = (level & 0x80) && (level & 0x7f) != MQTT_V5; /* try_private: 3.1.x only */
    if (out->bridge) level &= 0x7f;
    out->version = level;
    bool mqtt = bytes_eq(name, "MQTT", 4), mqisdp = bytes_eq(name, "MQIsdp", 6);
    if (!mqtt && !mqisdp) return MQTT_RC_UNSUPPORTED_PROTOCOL_VERSION; /* name stays empty */
    out->protocol_name = name;
    if ((mqtt && level != MQTT_V311 && level != MQTT_V5) || (mqisdp && level != MQTT_V31))
        return MQTT_RC_UNSUPPORTED_PROTOCOL_VERSION; /* [MQTT-3.1.2-2] */
    if (read_u8(&c, &cf) || read_u16(&c, &out->keep_alive)) return MQTT_RC_MALFORMED_PACKET;
    if (cf & 0x01) return MQTT_RC_MALFORMED_PACKET; /* reserved [MQTT-3.1.2-3] */
    out->clean_start = cf & 0x02;
    out->will = cf & 0x04;
    out->will_qos = (cf >> 3) & 0x03;
    out->will_retain = cf & 0x20;
    out->has_password = cf & 0x40;
    out->has_username = cf & 0x80;
    if (out->will_qos == 3) return MQTT_RC_MALFORMED_PACKET; /* [MQTT-3.1.2-12] */
    if (!out->will && (out->will_qos || out->will_retain))
        return MQTT_RC_MALFORMED_PACKET; /* [MQTT-3.1.2-11,13] */
    if (level != MQTT_V5 && out->has_password && !out->has_username)
        return MQTT_RC_MALFORMED_PACKET; /* 3.1.1 [MQTT-3.1.2-22] */
    uint8_t rc;
    if (level == MQTT_V5 && (rc = mqtt_read_props(&c, PROPS_CONNECT, &out->props))) return rc;
    if (read_utf8(&c, &out->client_id)) return MQTT_RC_MALFORMED_PACKET;
    if (out->will && (rc = decode_will(&c, level, out))) return rc;
    if (out->has_username && read_utf8(&c, &out->username)) return MQTT_RC_MALFORMED_PACKET;
    if (out->has_password && read_binary(&c, &out->password)) return MQTT_RC_MALFORMED_PACKET;
    return cur_left(&c) ? MQTT_RC_MALFORMED_PACKET : MQTT_RC_SUCCESS;
}

uint8_t
mqtt_decode_publish(uint8_t flags, const uint8_t *body, size_t len, uint8_t version,
                    struct mqtt_publish *out)
{
    struct mqtt_cursor c = {body, len, 0};
    out->dup = flags & 0x08;
    out->qos = (flags >> 1) & 0x03;
    out->retain = flags & 0x01;
    out->packet_id = 0;
    memset(&out->props, 0, sizeof(out->props));
    if (out->qos == 3) return MQTT_RC_MALFORMED_PACKET;             /* [MQTT-3.3.1-4] */
    if (out->qos == 0 && out->dup) return MQTT_RC_MALFORMED_PACKET; /* [MQTT-3.3.1-2] */
    if (read_utf8(&c, &out->topic)) return MQTT_RC_MALFORMED_PACKET;
    if (!is_wildcard_free(out->topic)) return MQTT_RC_TOPIC_NAME_INVALID; /* [MQTT-3.3.2-2] */
    if (out->qos) {
        if (read_u16(&c, &out->packet_id)) return MQTT_RC_MALFORMED_PACKET;
        if (out->packet_id == 0) return MQTT_RC_PROTOCOL_ERROR; /* [MQTT-2.2.1-3] */
    }
    uint8_t rc;
    if (version == MQTT_V5 && (rc = mqtt_read_props(&c, PROPS_PUBLISH, &out->props))) return rc;
    out->payload.p = c.p + c.pos;
    out->payload.len = cur_left(&c);
    return MQTT_RC_SUCCESS;
}

uint8_t
mqtt_decode_ack(uint8_t type, uint8_t flags, const uint8_t *body, size_t len, uint8_t version,
                struct mqtt_ack *out)
{
    struct mqtt_cursor c = {body, len, 0};
    memset(out, 0, sizeof(*out));
    if (flags != (type == MQTT_PUBREL ? 2 : 0))
        return MQTT_RC_MALFORMED_PACKET; /* [MQTT-3.6.1-1] */
    if (read_u16(&c, &out->packet_id)) return MQTT_RC_MALFORMED_PACKET;
    if (out->packet_id == 0) return MQTT_RC_PROTOCOL_ERROR;
    if (version != MQTT_V5) return cur_left(&c) ? MQTT_RC_MALFORMED_PACKET : MQTT_RC_SUCCESS;
    if (!cur_left(&c)) return MQTT_RC_SUCCESS; /* reason 0, no properties */
    read_u8(&c, &out->reason);
    if (!cur_left(&c)) return MQTT_RC_SUCCESS;
    uint8_t rc = mqtt_read_props(&c, PROPS_ACK, &out->props);
    if (rc) return rc;
    return cur_left(&c) ? MQTT_RC_MALFORMED_PACKET : MQTT_RC_SUCCESS;
}

/* One SUBSCRIBE entry; validates the options byte. */
static uint8_t
read_sub_entry(struct mqtt_cursor *c, uint8_t version, struct mqtt_sub_entry *e)
{
    uint8_t o;
    if (read_utf8(c, &e->filter) || read_u8(c, &o)) return MQTT_RC_MALFORMED_PACKET;
    e->qos = o & 0x03;
    e->no_local = o & 0x04;
    e->retain_as_published = o & 0x08;
    e->retain_handling = (o >> 4) & 0x03;
    if (version != MQTT_V5) { /* 3.1.1: only QoS bits; anything else is malformed */
        if (o & 0xfc || e->qos == 3) return MQTT_RC_MALFORMED_PACKET;
        e->no_local = e->retain_as_published = false;
        e->retain_handling = 0;
        return MQTT_RC_SUCCESS;
    }
    if (o & 0xc0) return MQTT_RC_MALFORMED_PACKET;  /* reserved [MQTT-3.8.3-5] */
    if (e->qos == 3) return MQTT_RC_PROTOCOL_ERROR; /* 3.8.3.1 */
    if (e->retain_handling == 3) return MQTT_RC_PROTOCOL_ERROR;
    return MQTT_RC_SUCCESS;
}

uint8_t
mqtt_decode_subscribe(uint8_t flags, const uint8_t *body, size_t len, uint8_t version,
                      struct mqtt_subscribe *out)
{
    struct mqtt_cursor c = {body, len, 0};
    memset(out, 0, sizeof(*out));
    if (flags != 2) return MQTT_RC_MALFORMED_PACKET; /* [MQTT-3.8.1-1] */
    if (read_u16(&c, &out->packet_id)) return MQTT_RC_MALFORMED_PACKET;
    if (out->packet_id == 0) return MQTT_RC_PROTOCOL_ERROR;
    uint8_t rc;
    if (version == MQTT_V5 && (rc = mqtt_read_props(&c, PROPS_SUBSCRIBE, &out->props))) return rc;
    out->entries = c.p + c.pos;
    out->entries_len = cur_left(&c);
    while (cur_left(&c)) {
        struct mqtt_sub_entry e;
        if ((rc = read_sub_entry(&c, version, &e))) return rc;
        out->count++;
    }
    return out->count ? MQTT_RC_SUCCESS : MQTT_RC_PROTOCOL_ERROR; /* [MQTT-3.8.3-2] */
}

bool
mqtt_sub_next(const struct mqtt_subscribe *s, uint8_t version, size_t *pos,
              struct mqtt_sub_entry *e)
{
    struct mqtt_cursor c = {s->entries, s->entries_len, *pos};
    if (!cur_left(&c) || read_sub_entry(&c, version, e)) return false;
    *pos = c.pos;
    return true;
}

uint8_t
mqtt_decode_unsubscribe(uint8_t flags, const uint8_t *body, size_t len, uint8_t version,
                        struct mqtt_unsubscribe *out)
{
    struct mqtt_cursor c = {body, len, 0};
    memset(out, 0, sizeof(*out));
    if (flags != 2) return MQTT_RC_MALFORMED_PACKET; /* [MQTT-3.10.1-1] */
    if (read_u16(&c, &out->packet_id)) return MQTT_RC_MALFORMED_PACKET;
    if (out->packet_id == 0) return MQTT_RC_PROTOCOL_ERROR;
    uint8_t rc;
    if (version == MQTT_V5 && (rc = mqtt_read_props(&c, PROPS_UNSUBSCRIBE, &out->props))) return rc;
    out->entries = c.p + c.pos;
    out->entries_len = cur_left(&c);
    while (cur_left(&c)) {
        struct lq_bytes f;
        if (read_utf8(&c, &f)) return MQTT_RC_MALFORMED_PACKET;
        out->count++;
    }
    return out->count ? MQTT_RC_SUCCESS : MQTT_RC_PROTOCOL_ERROR; /* [MQTT-3.10.3-2] */
}

bool
mqtt_unsub_next(const struct mqtt_unsubscribe *u, size_t *pos, struct lq_bytes *filter)
{
    struct mqtt_cursor c = {u->entries, u->entries_len, *pos};
    if (!cur_left(&c) || read_utf8(&c, filter)) return false;
    *pos = c.pos;
    return true;
}

static uint8_t
decode_reason_props(const uint8_t *body, size_t len, uint64_t allowed, struct mqtt_disconnect *out)
{
    struct mqtt_cursor c = {body, len, 0};
    memset(out, 0, sizeof(*out));
    if (!len) return MQTT_RC_SUCCESS;
    read_u8(&c, &out->reason);
    if (!cur_left(&c)) return MQTT_RC_SUCCESS;
    uint8_t rc = mqtt_read_props(&c, allowed, &out->props);
    if (rc) return rc;
    return cur_left(&c) ? MQTT_RC_MALFORMED_PACKET : MQTT_RC_SUCCESS;
}

uint8_t
mqtt_decode_disconnect(uint8_t flags, const uint8_t *body, size_t len, uint8_t version,
                       struct mqtt_disconnect *out)
{
    memset(out, 0, sizeof(*out));
    if (flags) return MQTT_RC_MALFORMED_PACKET;
    if (version != MQTT_V5) return len ? MQTT_RC_MALFORMED_PACKET : MQTT_RC_SUCCESS;
    return decode_reason_props(body, len, PROPS_DISCONNECT, out);
}

uint8_t
mqtt_decode_auth(uint8_t flags, const uint8_t *body, size_t len, struct mqtt_disconnect *out)
{
    memset(out, 0, sizeof(*out));
    if (flags) return MQTT_RC_MALFORMED_PACKET;
    return decode_reason_props(body, len, PROPS_AUTH, out);
}

uint8_t
mqtt_decode_connack(uint8_t flags, const uint8_t *body, size_t len, uint8_t version,
                    struct mqtt_connack *out)
{
    struct mqtt_cursor c = {body, len, 0};
    memset(out, 0, sizeof(*out));
    uint8_t ack;
    if (flags || read_u8(&c, &ack) || read_u8(&c, &out->reason)) return MQTT_RC_MALFORMED_PACKET;
    if (ack & 0xfe) return MQTT_RC_MALFORMED_PACKET;
    out->session_present = ack & 1;
    uint8_t rc;
    if (version == MQTT_V5 && (rc = mqtt_read_props(&c, PROPS_CONNACK, &out->props))) return rc;
    return cur_left(&c) ? MQTT_RC_MALFORMED_PACKET : MQTT_RC_SUCCESS;
}

uint8_t
mqtt_decode_suback(uint8_t type, uint8_t flags, const uint8_t *body, size_t len, uint8_t version,
                   struct mqtt_suback *out)
{
    struct mqtt_cursor c = {body, len, 0};
    memset(out, 0, sizeof(*out));
    if (flags || read_u16(&c, &out->packet_id)) return MQTT_RC_MALFORMED_PACKET;
    uint8_t rc;
    if (version == MQTT_V5 && (rc = mqtt_read_props(&c, PROPS_ACK, &out->props))) return rc;
    out->codes = c.p + c.pos;
    out->count = cur_left(&c);
    if (type == MQTT_SUBACK && out->count == 0) return MQTT_RC_MALFORMED_PACKET;
    return MQTT_RC_SUCCESS;
}
