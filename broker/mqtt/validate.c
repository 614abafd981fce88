/* SPDX-License-Identifier: MIT
 *
 * validate: UTF-8 well-formedness for MQTT strings, and the names of reason codes
 * and packet types for log lines. */
#include "mqtt_int.h"

bool
mqtt_utf8_is_valid(const uint8_t *p, size_t len)
{
    size_t i = 0;
    while (i < len) {
        uint8_t c = p[i];
        if (c < 0x80) {
            if (c == 0) return false; /* U+0000 [MQTT-1.5.4-2] */
            i++;
            continue;
        }
        uint32_t cp;
        size_t n;
        if ((c & 0xe0) == 0xc0) {
            cp = c & 0x1f;
            n = 1;
        } else if ((c & 0xf0) == 0xe0) {
            cp = c & 0x0f;
            n = 2;
        } else if ((c & 0xf8) == 0xf0) {
            cp = c & 0x07;
            n = 3;
        } else
            return false;
        if (len - i <= n) return false;
        for (size_t k = 1; k <= n; k++) {
            if ((p[i + k] & 0xc0) != 0x80) return false;
            cp = cp << 6 | (p[i + k] & 0x3f);
        }
        static const uint32_t min[4] = {0, 0x80, 0x800, 0x10000};
        if (cp < min[n]) return false;                  /* overlong */
        if (cp > 0x10ffff) return false;                /* beyond Unicode */
        if (cp >= 0xd800 && cp <= 0xdfff) return false; /* surrogates [MQTT-1.5.4-1] */
        i += n + 1;
    }
    return true;
}

const char *
mqtt_rc_str(uint8_t rc)
{
    switch (rc) {
    case 0x00: return "success";
    case 0x01: return "granted QoS 1";
    case 0x02: return "granted QoS 2";
    case 0x04: return "disconnect with will message";
    case 0x10: return "no matching subscribers";
    case 0x11: return "no subscription existed";
    case 0x18: return "continue authentication";
    case 0x19: return "re-authenticate";
    case 0x80: return "unspecified error";
    case 0x81: return "malformed packet";
    case 0x82: return "protocol error";
    case 0x83: return "implementation specific error";
    case 0x84: return "unsupported protocol version";
    case 0x85: return "client identifier not valid";
    case 0x86: return "bad user name or password";
    case 0x87: return "not authorized";
    case 0x88: return "server unavailable";
    case 0x89: return "server busy";
    case 0x8A: return "banned";
    case 0x8B: return "server shutting down";
    case 0x8C: return "bad authentication method";
    case 0x8D: return "keep alive timeout";
    case 0x8E: return "session taken over";
    case 0x8F: return "topic filter invalid";
    case 0x90: return "topic name invalid";
    case 0x91: return "packet identifier in use";
    case 0x92: return "packet identifier not found";
    case 0x93: return "receive maximum exceeded";
    case 0x94: return "topic alias invalid";
    case 0x95: return "packet too large";
    case 0x96: return "message rate too high";
    case 0x97: return "quota exceeded";
    case 0x98: return "administrative action";
    case 0x99: return "payload format invalid";
    case 0x9A: return "retain not supported";
    case 0x9B: return "QoS not supported";
    case 0x9C: return "use another server";
    case 0x9D: return "server moved";
    case 0x9E: return "shared subscriptions not supported";
    case 0x9F: return "connection rate exceeded";
    case 0xA0: return "maximum connect time";
    case 0xA1: return "subscription identifiers not supported";
    case 0xA2: return "wildcard subscriptions not supported";
    default: return "unknown reason code";
    }
}

const char *
mqtt_type_str(uint8_t type)
{
    static const char *const names[16] = {"RESERVED",  "CONNECT",  "CONNACK",     "PUBLISH",
                                          "PUBACK",    "PUBREC",   "PUBREL",      "PUBCOMP",
                                          "SUBSCRIBE", "SUBACK",   "UNSUBSCRIBE", "UNSUBACK",
                                          "PINGREQ",   "PINGRESP", "DISCONNECT",  "AUTH"};
    return names[type & 0x0f];
}

uint8_t
mqtt_rc_to_v3_connack(uint8_t rc)
{
    switch (rc) {
    case MQTT_RC_SUCCESS: return MQTT_V3_ACCEPTED;
    case MQTT_RC_UNSUPPORTED_PROTOCOL_VERSION: return MQTT_V3_REFUSED_PROTOCOL_VERSION;
    case MQTT_RC_CLIENT_ID_NOT_VALID: return MQTT_V3_REFUSED_IDENTIFIER;
    case MQTT_RC_BAD_USERNAME_OR_PASSWORD:
    case MQTT_RC_BAD_AUTHENTICATION_METHOD: return MQTT_V3_REFUSED_BAD_USERNAME_PASSWORD;
    case MQTT_RC_NOT_AUTHORIZED:
    case MQTT_RC_BANNED: return MQTT_V3_REFUSED_NOT_AUTHORIZED;
    default: return MQTT_V3_REFUSED_SERVER_UNAVAILABLE;
    }
}
