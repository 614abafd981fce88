/* SPDX-License-Identifier: MIT
 *
 * props: MQTT v5 properties (section 2.2.2), decoded into struct mqtt_props and
 * encoded back. One table says each property's wire type; the caller says which
 * properties its packet allows. User properties are not copied: `user` is a view of
 * a property block of which only the 0x26 entries count, so they forward in order. */
#include "mqtt_int.h"

enum ptype { P_NONE, P_BYTE, P_U16, P_U32, P_VARINT, P_UTF8, P_BINARY, P_PAIR };

static enum ptype
prop_type(uint32_t id)
{
    switch (id) {
    case MQTT_PROP_PAYLOAD_FORMAT:
    case MQTT_PROP_REQUEST_PROBLEM_INFO:
    case MQTT_PROP_REQUEST_RESPONSE_INFO:
    case MQTT_PROP_MAXIMUM_QOS:
    case MQTT_PROP_RETAIN_AVAILABLE:
    case MQTT_PROP_WILDCARD_SUB_AVAILABLE:
    case MQTT_PROP_SUB_ID_AVAILABLE:
    case MQTT_PROP_SHARED_SUB_AVAILABLE: return P_BYTE;
    case MQTT_PROP_SERVER_KEEP_ALIVE:
    case MQTT_PROP_RECEIVE_MAXIMUM:
    case MQTT_PROP_TOPIC_ALIAS_MAXIMUM:
    case MQTT_PROP_TOPIC_ALIAS: return P_U16;
    case MQTT_PROP_MESSAGE_EXPIRY:
    case MQTT_PROP_SESSION_EXPIRY:
    case MQTT_PROP_WILL_DELAY:
    case MQTT_PROP_MAXIMUM_PACKET_SIZE: return P_U32;
    case MQTT_PROP_SUBSCRIPTION_ID: return P_VARINT;
    case MQTT_PROP_CONTENT_TYPE:
    case MQTT_PROP_RESPONSE_TOPIC:
    case MQTT_PROP_ASSIGNED_CLIENT_ID:
    case MQTT_PROP_AUTH_METHOD:
    case MQTT_PROP_RESPONSE_INFO:
    case MQTT_PROP_SERVER_REFERENCE:
    case MQTT_PROP_REASON_STRING: return P_UTF8;
    case MQTT_PROP_CORRELATION_DATA:
    case MQTT_PROP_AUTH_DATA: return P_BINARY;
    case MQTT_PROP_USER_PROPERTY: return P_PAIR;
    default: return P_NONE;
    }
}

static bool
has_wildcard(struct lq_bytes b)
{
    for (size_t i = 0; i < b.len; i++)
        if (b.p[i] == '+' || b.p[i] == '#') return true;
    return false;
}

static uint8_t
store_byte(struct mqtt_props *o, uint32_t id, uint8_t v)
{
    if (v > 1) return MQTT_RC_PROTOCOL_ERROR; /* every byte property is 0 or 1 */
    switch (id) {
    case MQTT_PROP_PAYLOAD_FORMAT: o->payload_format = v; break;
    case MQTT_PROP_REQUEST_PROBLEM_INFO: o->request_problem_info = v; break;
    case MQTT_PROP_REQUEST_RESPONSE_INFO: o->request_response_info = v; break;
    case MQTT_PROP_MAXIMUM_QOS: o->maximum_qos = v; break;
    case MQTT_PROP_RETAIN_AVAILABLE: o->retain_available = v; break;
    case MQTT_PROP_WILDCARD_SUB_AVAILABLE: o->wildcard_sub_available = v; break;
    case MQTT_PROP_SUB_ID_AVAILABLE: o->sub_id_available = v; break;
    default: o->shared_sub_available = v; break;
    }
    return MQTT_RC_SUCCESS;
}

static uint8_t
store_u16(struct mqtt_props *o, uint32_t id, uint16_t v)
{
    switch (id) {
    case MQTT_PROP_SERVER_KEEP_ALIVE: o->server_keep_alive = v; break;
    case MQTT_PROP_RECEIVE_MAXIMUM:
        if (v == 0) return MQTT_RC_PROTOCOL_ERROR; /* [MQTT-3.1.2-?]: 0 is not allowed */
        o->receive_maximum = v;
        break;
    case MQTT_PROP_TOPIC_ALIAS_MAXIMUM: o->topic_alias_maximum = v; break;
    default: o->topic_alias = v; break;
    }
    return MQTT_RC_SUCCESS;
}

static uint8_t
store_u32(struct mqtt_props *o, uint32_t id, uint32_t v)
{
    switch (id) {
    case MQTT_PROP_MESSAGE_EXPIRY: o->message_expiry = v; break;
    case MQTT_PROP_SESSION_EXPIRY: o->session_expiry = v; break;
    case MQTT_PROP_WILL_DELAY: o->will_delay = v; break;
    default:
        if (v == 0) return MQTT_RC_PROTOCOL_ERROR; /* maximum packet size 0 */
        o->maximum_packet_size = v;
        break;
    }
    return MQTT_RC_SUCCESS;
}

static struct lq_bytes *
bytes_field(struct mqtt_props *o, uint32_t id)
{
    switch (id) {
    case MQTT_PROP_CONTENT_TYPE: return &o->content_type;
    case MQTT_PROP_RESPONSE_TOPIC: return &o->response_topic;
    case MQTT_PROP_CORRELATION_DATA: return &o->correlation_data;
    case MQTT_PROP_ASSIGNED_CLIENT_ID: return &o->assigned_client_id;
    case MQTT_PROP_AUTH_METHOD: return &o->auth_method;
    case MQTT_PROP_AUTH_DATA: return &o->auth_data;
    case MQTT_PROP_RESPONSE_INFO: return &o->response_info;
    case MQTT_PROP_SERVER_REFERENCE: return &o->server_reference;
    default: return &o->reason_string;
    }
}

static uint8_t
read_one(struct mqtt_cursor *c, uint32_t id, struct mqtt_props *o)
{
    uint8_t b;
    uint16_t u16;
    uint32_t u32;
    struct lq_bytes s, v;
    switch (prop_type(id)) {
    case P_BYTE:
        if (read_u8(c, &b)) return MQTT_RC_MALFORMED_PACKET;
        return store_byte(o, id, b);
    case P_U16:
        if (read_u16(c, &u16)) return MQTT_RC_MALFORMED_PACKET;
        return store_u16(o, id, u16);
    case P_U32:
        if (read_u32(c, &u32)) return MQTT_RC_MALFORMED_PACKET;
        return store_u32(o, id, u32);
    case P_VARINT: /* subscription identifier, 1 .. 268,435,455 */
        if (read_varint(c, &u32)) return MQTT_RC_MALFORMED_PACKET;
        if (u32 == 0) return MQTT_RC_PROTOCOL_ERROR;
        o->sub_id = u32; /* one: a repeated property is refused by the caller */
        return MQTT_RC_SUCCESS;
    case P_UTF8:
        if (read_utf8(c, &s)) return MQTT_RC_MALFORMED_PACKET;
        if (id == MQTT_PROP_RESPONSE_TOPIC && (s.len == 0 || has_wildcard(s)))
            return MQTT_RC_PROTOCOL_ERROR; /* a topic name [MQTT-3.3.2-14] */
        *bytes_field(o, id) = s;
        return MQTT_RC_SUCCESS;
    case P_BINARY:
        if (read_binary(c, &s)) return MQTT_RC_MALFORMED_PACKET;
        *bytes_field(o, id) = s;
        return MQTT_RC_SUCCESS;
    case P_PAIR:
        if (read_utf8(c, &s) || read_utf8(c, &v)) return MQTT_RC_MALFORMED_PACKET;
        o->user_count++;
        return MQTT_RC_SUCCESS;
    default: return MQTT_RC_MALFORMED_PACKET; /* unknown identifier */
    }
}

uint8_t
mqtt_decode_props(const uint8_t *p, size_t len, uint64_t allowed, struct mqtt_props *out)
{
    memset(out, 0, sizeof(*out));
    struct mqtt_cursor c = {p, len, 0};
    while (cur_left(&c)) {
        uint32_t id;
        if (read_varint(&c, &id)) return MQTT_RC_MALFORMED_PACKET;
        if (id > 0x3f || prop_type(id) == P_NONE) return MQTT_RC_MALFORMED_PACKET;
        uint64_t bit = MQTT_PBIT(id);
        if (!(allowed & bit)) return MQTT_RC_PROTOCOL_ERROR; /* not in this packet */
        if ((out->present & bit) && id != MQTT_PROP_USER_PROPERTY)
            return MQTT_RC_PROTOCOL_ERROR; /* included more than once */
        uint8_t rc = read_one(&c, id, out);
        if (rc) return rc;
        out->present |= bit;
    }
    if (out->user_count) out->user = (struct lq_bytes){p, len};
    return MQTT_RC_SUCCESS;
}

uint8_t
mqtt_read_props(struct mqtt_cursor *c, uint64_t allowed, struct mqtt_props *out)
{
    uint32_t n;
    if (read_varint(c, &n)) return MQTT_RC_MALFORMED_PACKET;
    if (n > cur_left(c)) return MQTT_RC_MALFORMED_PACKET; /* overruns the packet */
    uint8_t rc = mqtt_decode_props(c->p + c->pos, n, allowed, out);
    c->pos += n;
    return rc;
}

/* ---- encoding ---- */

bool
mqtt_props_next_user(struct lq_bytes block, size_t *pos, struct lq_bytes *name,
                     struct lq_bytes *value, size_t *entry_start)
{
    struct mqtt_cursor c = {block.p, block.len, *pos};
    while (cur_left(&c)) {
        size_t start = c.pos;
        uint32_t id;
        if (read_varint(&c, &id)) return false;
        struct lq_bytes s, v;
        uint32_t u32;
        uint16_t u16;
        uint8_t b;
        switch (prop_type(id)) {
        case P_BYTE:
            if (read_u8(&c, &b)) return false;
            break;
        case P_U16:
            if (read_u16(&c, &u16)) return false;
            break;
        case P_U32:
            if (read_u32(&c, &u32)) return false;
            break;
        case P_VARINT:
            if (read_varint(&c, &u32)) return false;
            break;
        case P_UTF8:
        case P_BINARY:
            if (read_binary(&c, &s)) return false;
            break;
        case P_PAIR:
            if (read_binary(&c, &s) || read_binary(&c, &v)) return false;
            break;
        default: return false;
        }
        if (id == MQTT_PROP_USER_PROPERTY) {
            *pos = c.pos;
            *name = s;
            *value = v;
            if (entry_start) *entry_start = start;
            return true;
        }
    }
    *pos = c.pos;
    return false;
}

/* Copy the 0x26 entries of a (validated) property block. */
static void
put_user(struct mqtt_writer *w, struct lq_bytes block)
{
    size_t pos = 0, start;
    struct lq_bytes k, v;
    while (mqtt_props_next_user(block, &pos, &k, &v, &start))
        put_bytes(w, block.p + start, pos - start);
}

static void
put_bytes_prop(struct mqtt_writer *w, uint8_t id, struct lq_bytes b)
{
    put_u8(w, id);
    put_binary(w, b);
}

void
mqtt_put_props(struct mqtt_writer *w, const struct mqtt_props *p)
{
    uint64_t has = p->present;
#define HAS(id) (has & MQTT_PBIT(id))
    if (HAS(MQTT_PROP_PAYLOAD_FORMAT)) {
        put_u8(w, MQTT_PROP_PAYLOAD_FORMAT);
        put_u8(w, p->payload_format);
    }
    if (HAS(MQTT_PROP_MESSAGE_EXPIRY)) {
        put_u8(w, MQTT_PROP_MESSAGE_EXPIRY);
        put_u32(w, p->message_expiry);
    }
    if (HAS(MQTT_PROP_CONTENT_TYPE)) put_bytes_prop(w, MQTT_PROP_CONTENT_TYPE, p->content_type);
    if (HAS(MQTT_PROP_RESPONSE_TOPIC))
        put_bytes_prop(w, MQTT_PROP_RESPONSE_TOPIC, p->response_topic);
    if (HAS(MQTT_PROP_CORRELATION_DATA))
        put_bytes_prop(w, MQTT_PROP_CORRELATION_DATA, p->correlation_data);
    if (HAS(MQTT_PROP_SUBSCRIPTION_ID)) {
        for (uint32_t i = 0; i < p->sub_id_count; i++) {
            put_u8(w, MQTT_PROP_SUBSCRIPTION_ID);
            put_varint(w, p->sub_ids[i]);
        }
        if (!p->sub_id_count) {
            put_u8(w, MQTT_PROP_SUBSCRIPTION_ID);
            put_varint(w, p->sub_id);
        }
    }
    if (HAS(MQTT_PROP_SESSION_EXPIRY)) {
        put_u8(w, MQTT_PROP_SESSION_EXPIRY);
        put_u32(w, p->session_expiry);
    }
    if (HAS(MQTT_PROP_ASSIGNED_CLIENT_ID))
        put_bytes_prop(w, MQTT_PROP_ASSIGNED_CLIENT_ID, p->assigned_client_id);
    if (HAS(MQTT_PROP_SERVER_KEEP_ALIVE)) {
        put_u8(w, MQTT_PROP_SERVER_KEEP_ALIVE);
        put_u16(w, p->server_keep_alive);
    }
    if (HAS(MQTT_PROP_AUTH_METHOD)) put_bytes_prop(w, MQTT_PROP_AUTH_METHOD, p->auth_method);
    if (HAS(MQTT_PROP_AUTH_DATA)) put_bytes_prop(w, MQTT_PROP_AUTH_DATA, p->auth_data);
    if (HAS(MQTT_PROP_REQUEST_PROBLEM_INFO)) {
        put_u8(w, MQTT_PROP_REQUEST_PROBLEM_INFO);
        put_u8(w, p->request_problem_info);
    }
    if (HAS(MQTT_PROP_WILL_DELAY)) {
        put_u8(w, MQTT_PROP_WILL_DELAY);
        put_u32(w, p->will_delay);
    }
    if (HAS(MQTT_PROP_REQUEST_RESPONSE_INFO)) {
        put_u8(w, MQTT_PROP_REQUEST_RESPONSE_INFO);
        put_u8(w, p->request_response_info);
    }
    if (HAS(MQTT_PROP_RESPONSE_INFO)) put_bytes_prop(w, MQTT_PROP_RESPONSE_INFO, p->response_info);
    if (HAS(MQTT_PROP_SERVER_REFERENCE))
        put_bytes_prop(w, MQTT_PROP_SERVER_REFERENCE, p->server_reference);
    if (HAS(MQTT_PROP_REASON_STRING)) put_bytes_prop(w, MQTT_PROP_REASON_STRING, p->reason_string);
    if (HAS(MQTT_PROP_RECEIVE_MAXIMUM)) {
        put_u8(w, MQTT_PROP_RECEIVE_MAXIMUM);
        put_u16(w, p->receive_maximum);
    }
    if (HAS(MQTT_PROP_TOPIC_ALIAS_MAXIMUM)) {
        put_u8(w, MQTT_PROP_TOPIC_ALIAS_MAXIMUM);
        put_u16(w, p->topic_alias_maximum);
    }
    if (HAS(MQTT_PROP_TOPIC_ALIAS)) {
        put_u8(w, MQTT_PROP_TOPIC_ALIAS);
        put_u16(w, p->topic_alias);
    }
    if (HAS(MQTT_PROP_MAXIMUM_QOS)) {
        put_u8(w, MQTT_PROP_MAXIMUM_QOS);
        put_u8(w, p->maximum_qos);
    }
    if (HAS(MQTT_PROP_RETAIN_AVAILABLE)) {
        put_u8(w, MQTT_PROP_RETAIN_AVAILABLE);
        put_u8(w, p->retain_available);
    }
    if (HAS(MQTT_PROP_MAXIMUM_PACKET_SIZE)) {
        put_u8(w, MQTT_PROP_MAXIMUM_PACKET_SIZE);
        put_u32(w, p->maximum_packet_size);
    }
    if (HAS(MQTT_PROP_WILDCARD_SUB_AVAILABLE)) {
        put_u8(w, MQTT_PROP_WILDCARD_SUB_AVAILABLE);
        put_u8(w, p->wildcard_sub_available);
    }
    if (HAS(MQTT_PROP_SUB_ID_AVAILABLE)) {
        put_u8(w, MQTT_PROP_SUB_ID_AVAILABLE);
        put_u8(w, p->sub_id_available);
    }
    if (HAS(MQTT_PROP_SHARED_SUB_AVAILABLE)) {
        put_u8(w, MQTT_PROP_SHARED_SUB_AVAILABLE);
        put_u8(w, p->shared_sub_available);
    }
    if (HAS(MQTT_PROP_USER_PROPERTY)) put_user(w, p->user);
#undef HAS
    put_bytes(w, p->raw.p, p->raw.len);
}

size_t
mqtt_props_size(const struct mqtt_props *p)
{
    struct mqtt_writer w = {NULL, 0, 0};
    mqtt_put_props(&w, p);
    return w.len;
}

void
mqtt_put_props_block(struct mqtt_writer *w, const struct mqtt_props *p)
{
    size_t n = mqtt_props_size(p);
    put_varint(w, (uint32_t)n);
    mqtt_put_props(w, p);
}

size_t
mqtt_encode_props_raw(const struct mqtt_props *p, uint8_t *out, size_t cap)
{
    struct mqtt_writer w = {out, cap, 0};
    mqtt_put_props(&w, p);
    return w.len;
}

size_t
mqtt_varint_size(uint32_t v)
{
    return v < 128 ? 1 : v < 16384 ? 2 : v < 2097152 ? 3 : 4;
}
