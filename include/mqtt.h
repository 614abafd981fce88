/* SPDX-License-Identifier: MIT
 *
 * mqtt: the MQTT 5.0 / 3.1.1 / 3.1 packet codec. Pure: bytes in, structs out, and
 * structs in, bytes out. No sockets, no libevent, no allocation on decode.
 *
 * Decoded strings and binary data are views (struct lq_bytes) into the packet
 * buffer handed to the decoder: they live exactly as long as that buffer.
 *
 * Every decoder returns an MQTT v5 reason code: MQTT_RC_SUCCESS, or
 * MQTT_RC_MALFORMED_PACKET / MQTT_RC_PROTOCOL_ERROR (and a few more named below)
 * when the input is not valid. The caller (session dispatch) turns a failure into a
 * DISCONNECT or a close; the codec never logs.
 */
#ifndef LUNAMQ_MQTT_H
#define LUNAMQ_MQTT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "lq.h"

/* Protocol levels as carried in CONNECT. */
enum mqtt_version {
    MQTT_V31 = 3,
    MQTT_V311 = 4,
    MQTT_V5 = 5,
};

enum mqtt_type {
    MQTT_CONNECT = 1,
    MQTT_CONNACK = 2,
    MQTT_PUBLISH = 3,
    MQTT_PUBACK = 4,
    MQTT_PUBREC = 5,
    MQTT_PUBREL = 6,
    MQTT_PUBCOMP = 7,
    MQTT_SUBSCRIBE = 8,
    MQTT_SUBACK = 9,
    MQTT_UNSUBSCRIBE = 10,
    MQTT_UNSUBACK = 11,
    MQTT_PINGREQ = 12,
    MQTT_PINGRESP = 13,
    MQTT_DISCONNECT = 14,
    MQTT_AUTH = 15,
};

/* MQTT v5 reason codes (section 2.4). */
enum mqtt_rc {
    MQTT_RC_SUCCESS = 0x00, /* also: normal disconnection, granted QoS 0 */
    MQTT_RC_GRANTED_QOS1 = 0x01,
    MQTT_RC_GRANTED_QOS2 = 0x02,
    MQTT_RC_DISCONNECT_WITH_WILL = 0x04,
    MQTT_RC_NO_MATCHING_SUBSCRIBERS = 0x10,
    MQTT_RC_NO_SUBSCRIPTION_EXISTED = 0x11,
    MQTT_RC_CONTINUE_AUTHENTICATION = 0x18,
    MQTT_RC_REAUTHENTICATE = 0x19,
    MQTT_RC_UNSPECIFIED_ERROR = 0x80,
    MQTT_RC_MALFORMED_PACKET = 0x81,
    MQTT_RC_PROTOCOL_ERROR = 0x82,
    MQTT_RC_IMPLEMENTATION_SPECIFIC = 0x83,
    MQTT_RC_UNSUPPORTED_PROTOCOL_VERSION = 0x84,
    MQTT_RC_CLIENT_ID_NOT_VALID = 0x85,
    MQTT_RC_BAD_USERNAME_OR_PASSWORD = 0x86,
    MQTT_RC_NOT_AUTHORIZED = 0x87,
    MQTT_RC_SERVER_UNAVAILABLE = 0x88,
    MQTT_RC_SERVER_BUSY = 0x89,
    MQTT_RC_BANNED = 0x8A,
    MQTT_RC_SERVER_SHUTTING_DOWN = 0x8B,
    MQTT_RC_BAD_AUTHENTICATION_METHOD = 0x8C,
    MQTT_RC_KEEP_ALIVE_TIMEOUT = 0x8D,
    MQTT_RC_SESSION_TAKEN_OVER = 0x8E,
    MQTT_RC_TOPIC_FILTER_INVALID = 0x8F,
    MQTT_RC_TOPIC_NAME_INVALID = 0x90,
    MQTT_RC_PACKET_ID_IN_USE = 0x91,
    MQTT_RC_PACKET_ID_NOT_FOUND = 0x92,
    MQTT_RC_RECEIVE_MAXIMUM_EXCEEDED = 0x93,
    MQTT_RC_TOPIC_ALIAS_INVALID = 0x94,
    MQTT_RC_PACKET_TOO_LARGE = 0x95,
    MQTT_RC_MESSAGE_RATE_TOO_HIGH = 0x96,
    MQTT_RC_QUOTA_EXCEEDED = 0x97,
    MQTT_RC_ADMINISTRATIVE_ACTION = 0x98,
    MQTT_RC_PAYLOAD_FORMAT_INVALID = 0x99,
    MQTT_RC_RETAIN_NOT_SUPPORTED = 0x9A,
    MQTT_RC_QOS_NOT_SUPPORTED = 0x9B,
    MQTT_RC_USE_ANOTHER_SERVER = 0x9C,
    MQTT_RC_SERVER_MOVED = 0x9D,
    MQTT_RC_SHARED_SUBS_NOT_SUPPORTED = 0x9E,
    MQTT_RC_CONNECTION_RATE_EXCEEDED = 0x9F,
    MQTT_RC_MAXIMUM_CONNECT_TIME = 0xA0,
    MQTT_RC_SUBSCRIPTION_IDS_NOT_SUPPORTED = 0xA1,
    MQTT_RC_WILDCARD_SUBS_NOT_SUPPORTED = 0xA2,
};

/* Short English text for a reason code, for logs ("malformed packet"). */
const char *mqtt_rc_str(uint8_t rc);
const char *mqtt_type_str(uint8_t type);

/* v3.1.1 CONNACK return codes. */
enum mqtt_v3_connack {
    MQTT_V3_ACCEPTED = 0,
    MQTT_V3_REFUSED_PROTOCOL_VERSION = 1,
    MQTT_V3_REFUSED_IDENTIFIER = 2,
    MQTT_V3_REFUSED_SERVER_UNAVAILABLE = 3,
    MQTT_V3_REFUSED_BAD_USERNAME_PASSWORD = 4,
    MQTT_V3_REFUSED_NOT_AUTHORIZED = 5,
};
/* The v3 CONNACK code closest to a v5 reason code. */
uint8_t mqtt_rc_to_v3_connack(uint8_t rc);

/* Property identifiers (section 2.2.2.2). */
enum mqtt_prop_id {
    MQTT_PROP_PAYLOAD_FORMAT = 0x01,
    MQTT_PROP_MESSAGE_EXPIRY = 0x02,
    MQTT_PROP_CONTENT_TYPE = 0x03,
    MQTT_PROP_RESPONSE_TOPIC = 0x08,
    MQTT_PROP_CORRELATION_DATA = 0x09,
    MQTT_PROP_SUBSCRIPTION_ID = 0x0B,
    MQTT_PROP_SESSION_EXPIRY = 0x11,
    MQTT_PROP_ASSIGNED_CLIENT_ID = 0x12,
    MQTT_PROP_SERVER_KEEP_ALIVE = 0x13,
    MQTT_PROP_AUTH_METHOD = 0x15,
    MQTT_PROP_AUTH_DATA = 0x16,
    MQTT_PROP_REQUEST_PROBLEM_INFO = 0x17,
    MQTT_PROP_WILL_DELAY = 0x18,
    MQTT_PROP_REQUEST_RESPONSE_INFO = 0x19,
    MQTT_PROP_RESPONSE_INFO = 0x1A,
    MQTT_PROP_SERVER_REFERENCE = 0x1C,
    MQTT_PROP_REASON_STRING = 0x1F,
    MQTT_PROP_RECEIVE_MAXIMUM = 0x21,
    MQTT_PROP_TOPIC_ALIAS_MAXIMUM = 0x22,
    MQTT_PROP_TOPIC_ALIAS = 0x23,
    MQTT_PROP_MAXIMUM_QOS = 0x24,
    MQTT_PROP_RETAIN_AVAILABLE = 0x25,
    MQTT_PROP_USER_PROPERTY = 0x26,
    MQTT_PROP_MAXIMUM_PACKET_SIZE = 0x27,
    MQTT_PROP_WILDCARD_SUB_AVAILABLE = 0x28,
    MQTT_PROP_SUB_ID_AVAILABLE = 0x29,
    MQTT_PROP_SHARED_SUB_AVAILABLE = 0x2A,
};

/* The largest Remaining Length a fixed header can carry (4-byte varint). */
#define MQTT_MAX_REMAINING 268435455u

/* Bit for property id X in struct mqtt_props.present. */
#define MQTT_PBIT(id) (UINT64_C(1) << (id))

/* Decoded (or to-be-encoded) properties of one packet. A property is there when its
 * bit is set in `present`. User properties are kept as the raw encoded run of
 * (0x26, name, value) entries, in their order, so they forward unchanged.
 * Subscription identifiers: decoding keeps the one a SUBSCRIBE may carry in sub_id (a
 * repeat is a protocol error); encoding writes sub_id_count of them from sub_ids (a
 * PUBLISH to a client: every identifier of the client's matching subscriptions
 * [MQTT-3.3.4-4]), or sub_id alone when sub_id_count is 0. */
struct mqtt_props {
    uint64_t present;
    uint8_t payload_format;
    uint8_t request_problem_info;
    uint8_t request_response_info;
    uint8_t maximum_qos;
    uint8_t retain_available;
    uint8_t wildcard_sub_available;
    uint8_t sub_id_available;
    uint8_t shared_sub_available;
    uint16_t server_keep_alive;
    uint16_t receive_maximum;
    uint16_t topic_alias_maximum;
    uint16_t topic_alias;
    uint32_t message_expiry;
    uint32_t session_expiry;
    uint32_t will_delay;
    uint32_t maximum_packet_size;
    uint32_t sub_id;
    uint32_t sub_id_count;
    const uint32_t *sub_ids; /* encoding only: the caller's array */
    struct lq_bytes content_type;
    struct lq_bytes response_topic;
    struct lq_bytes correlation_data;
    struct lq_bytes assigned_client_id;
    struct lq_bytes auth_method;
    struct lq_bytes auth_data;
    struct lq_bytes response_info;
    struct lq_bytes server_reference;
    struct lq_bytes reason_string;
    /* User properties: a property block of which only the 0x26 entries count (the
     * decoder points it at the whole block it read), encoded back in their order. */
    struct lq_bytes user;
    uint32_t user_count; /* any number [MQTT-3.3.2-17]: the packet size bounds it */
    /* Encoding only: already-encoded property entries appended verbatim. */
    struct lq_bytes raw;
};

/* ---- framing ---- */

/* Parse a fixed header from the start of buf (len bytes available).
 * Returns 1 and fills *type_flags (the first byte), *remaining and *header_len when
 * the whole fixed header is present; 0 when more bytes are needed; -1 when the
 * Remaining Length is malformed (more than 4 bytes, [MQTT-1.5.5-1] is not checked:
 * non-minimal encodings are accepted as the spec's decoders do). */
int mqtt_frame_header(const uint8_t *buf, size_t len, uint8_t *type_flags, uint32_t *remaining,
                      size_t *header_len);

/* The protocol level of a CONNECT from its first bytes (fixed header included), for
 * answering one that is refused before it is all in: 3, 4 or 5; 0 when the bytes are
 * not the start of an MQTT CONNECT or do not reach the level yet. */
uint8_t mqtt_connect_version(const uint8_t *buf, size_t len);

/* ---- decoding: `body` is the packet after its fixed header (remaining bytes) ---- */

struct mqtt_connect {
    struct lq_bytes protocol_name;
    uint8_t version; /* enum mqtt_version */
    /* a bridge: mosquitto's try_private sets the protocol level's top bit (decoded
     * here, version without it; encoded: version | 0x80) */
    bool bridge;
    bool clean_start;
    uint16_t keep_alive;
    struct mqtt_props props;
    struct lq_bytes client_id;
    bool will;
    uint8_t will_qos;
    bool will_retain;
    struct mqtt_props will_props;
    struct lq_bytes will_topic;
    struct lq_bytes will_payload;
    bool has_username;
    bool has_password;
    struct lq_bytes username;
    struct lq_bytes password;
};

/* CONNECT. Returns MQTT_RC_UNSUPPORTED_PROTOCOL_VERSION for a protocol name/level we
 * do not speak (out->version is then set to what was read, so the caller can pick
 * the CONNACK format), MQTT_RC_MALFORMED_PACKET / MQTT_RC_PROTOCOL_ERROR otherwise
 * on bad input. Checks: reserved flag bit [MQTT-3.1.2-3], will flags consistency
 * [MQTT-3.1.2-11..15], will QoS 3, username/password flags (v3.1.1: password without
 * username is malformed), UTF-8 strings, property validity for CONNECT and will. */
uint8_t mqtt_decode_connect(uint8_t flags, const uint8_t *body, size_t len,
                            struct mqtt_connect *out);

struct mqtt_publish {
    uint8_t qos;
    bool dup;
    bool retain;
    struct lq_bytes topic; /* may be empty in v5 when a topic alias is used */
    uint16_t packet_id;    /* 0 for QoS 0 */
    struct mqtt_props props;
    struct lq_bytes payload;
};

/* PUBLISH. `flags` is the low nibble of the first byte. QoS 3 is malformed; QoS 0
 * with DUP set is malformed [MQTT-3.3.1-2]; packet id 0 is a protocol error; topic must
 * be valid UTF-8 without wildcards (MQTT_RC_TOPIC_NAME_INVALID) [MQTT-3.3.2-2]; a
 * subscription identifier from a client is a protocol error; the payload is not checked
 * against the payload format indicator here. */
uint8_t mqtt_decode_publish(uint8_t flags, const uint8_t *body, size_t len, uint8_t version,
                            struct mqtt_publish *out);

/* PUBACK, PUBREC, PUBREL, PUBCOMP (and the reason/props of each). */
struct mqtt_ack {
    uint16_t packet_id;
    uint8_t reason; /* 0 when absent */
    struct mqtt_props props;
};
/* `type` is the packet type; flags must be 0 (PUBREL: 2) [MQTT-3.6.1-1]. */
uint8_t mqtt_decode_ack(uint8_t type, uint8_t flags, const uint8_t *body, size_t len,
                        uint8_t version, struct mqtt_ack *out);

/* SUBSCRIBE: the header is decoded and every entry validated here; entries are then
 * walked with mqtt_sub_next(). Flags must be 2 [MQTT-3.8.1-1]; no entries is a protocol
 * error [MQTT-3.8.3-2]; reserved option bits set or retain handling 3 is malformed
 * [MQTT-3.8.3-5]; more than one subscription identifier or one equal to 0 is a protocol
 * error. Topic filter syntax is NOT checked here (SUBACK reports invalid filters). */
struct mqtt_subscribe {
    uint16_t packet_id;
    struct mqtt_props props;
    const uint8_t *entries; /* first entry */
    size_t entries_len;
    size_t count;
};
struct mqtt_sub_entry {
    struct lq_bytes filter;
    uint8_t qos;
    bool no_local;
    bool retain_as_published;
    uint8_t retain_handling;
};
uint8_t mqtt_decode_subscribe(uint8_t flags, const uint8_t *body, size_t len, uint8_t version,
                              struct mqtt_subscribe *out);
/* Walk entries of a decoded SUBSCRIBE: *pos starts at 0. Returns true and fills *e
 * while entries remain. */
bool mqtt_sub_next(const struct mqtt_subscribe *s, uint8_t version, size_t *pos,
                   struct mqtt_sub_entry *e);

struct mqtt_unsubscribe {
    uint16_t packet_id;
    struct mqtt_props props;
    const uint8_t *entries;
    size_t entries_len;
    size_t count;
};
uint8_t mqtt_decode_unsubscribe(uint8_t flags, const uint8_t *body, size_t len, uint8_t version,
                                struct mqtt_unsubscribe *out);
bool mqtt_unsub_next(const struct mqtt_unsubscribe *u, size_t *pos, struct lq_bytes *filter);

/* DISCONNECT and AUTH (v5 bodies; a v3 DISCONNECT must be empty). */
struct mqtt_disconnect {
    uint8_t reason;
    struct mqtt_props props;
};
uint8_t mqtt_decode_disconnect(uint8_t flags, const uint8_t *body, size_t len, uint8_t version,
                               struct mqtt_disconnect *out);
uint8_t mqtt_decode_auth(uint8_t flags, const uint8_t *body, size_t len,
                         struct mqtt_disconnect *out);

/* Client-side packets, used by tests and the bench client. */
struct mqtt_connack {
    bool session_present;
    uint8_t reason;
    struct mqtt_props props;
};
uint8_t mqtt_decode_connack(uint8_t flags, const uint8_t *body, size_t len, uint8_t version,
                            struct mqtt_connack *out);
/* SUBACK/UNSUBACK: reason codes are the bytes from out->codes (count of them). */
struct mqtt_suback {
    uint16_t packet_id;
    struct mqtt_props props;
    const uint8_t *codes;
    size_t count;
};
uint8_t mqtt_decode_suback(uint8_t type, uint8_t flags, const uint8_t *body, size_t len,
                           uint8_t version, struct mqtt_suback *out);

/* Properties alone: `allowed` is the set of MQTT_PBIT()s valid in this packet. A
 * property outside it is a protocol error; a repeated property (other than user
 * property) is a protocol error. */
uint8_t mqtt_decode_props(const uint8_t *p, size_t len, uint64_t allowed, struct mqtt_props *out);

/* The next user property (0x26) of a property block at or after *pos, which it
 * advances; entry_start (may be NULL) gets the offset of the entry. False at the end. */
bool mqtt_props_next_user(struct lq_bytes block, size_t *pos, struct lq_bytes *name,
                          struct lq_bytes *value, size_t *entry_start);

/* ---- encoding ----
 * Every encoder writes into `out` (capacity `cap`) and returns the total number of
 * bytes of the packet, fixed header included. When that is more than `cap`, nothing
 * useful is written: call again with a buffer that large. So `mqtt_encode_x(..., NULL, 0)`
 * measures. Encoders for v3 omit reason codes and properties as the version demands. */

struct mqtt_writer {
    uint8_t *p;
    size_t cap;
    size_t len; /* bytes written, or that would have been */
};

/* Length of a property block's content (without its own length varint). */
size_t mqtt_props_size(const struct mqtt_props *p);
/* Property entries without the length prefix (for pre-encoded `raw` runs). */
size_t mqtt_encode_props_raw(const struct mqtt_props *p, uint8_t *out, size_t cap);
size_t mqtt_varint_size(uint32_t v);

size_t mqtt_encode_connack(const struct mqtt_connack *c, uint8_t version, uint8_t *out, size_t cap);
/* PUBLISH with everything but the payload: returns the size of the packet head (fixed
 * header through properties) and stores in *total the full packet size. The caller
 * appends the payload bytes after the head. Lets the payload go out by reference. */
size_t mqtt_encode_publish_head(const struct mqtt_publish *p, uint8_t version, uint8_t *out,
                                size_t cap, size_t *total);
/* Whole PUBLISH, payload included. */
size_t mqtt_encode_publish(const struct mqtt_publish *p, uint8_t version, uint8_t *out, size_t cap);
/* PUBACK/PUBREC/PUBREL/PUBCOMP: v5 omits reason and props when reason is 0 and there
 * are no props (2-byte form, 3.4.2.1). */
size_t mqtt_encode_ack(uint8_t type, const struct mqtt_ack *a, uint8_t version, uint8_t *out,
                       size_t cap);
/* SUBACK / UNSUBACK (v3 UNSUBACK carries no codes; v3 SUBACK maps >= 0x80 to 0x80). */
size_t mqtt_encode_suback(uint8_t type, const struct mqtt_suback *s, uint8_t version, uint8_t *out,
                          size_t cap);
size_t mqtt_encode_disconnect(const struct mqtt_disconnect *d, uint8_t version, uint8_t *out,
                              size_t cap);
size_t mqtt_encode_pingresp(uint8_t *out, size_t cap);

/* Client-side encoders (tests, bench). */
size_t mqtt_encode_connect(const struct mqtt_connect *c, uint8_t *out, size_t cap);
size_t mqtt_encode_subscribe(uint16_t packet_id, const struct mqtt_props *props,
                             const struct mqtt_sub_entry *e, size_t n, uint8_t version,
                             uint8_t *out, size_t cap);
size_t mqtt_encode_unsubscribe(uint16_t packet_id, const struct mqtt_props *props,
                               const struct lq_bytes *filters, size_t n, uint8_t version,
                               uint8_t *out, size_t cap);
size_t mqtt_encode_pingreq(uint8_t *out, size_t cap);

/* ---- validation (validate.c) ---- */

/* Well-formed UTF-8, no surrogates, no U+0000 [MQTT-1.5.4-1,2]. */
bool mqtt_utf8_is_valid(const uint8_t *p, size_t len);

#endif
