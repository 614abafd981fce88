/* SPDX-License-Identifier: MIT
 *
 * connlog: the lines that say a client came and went. In lunamq's words, or with
 * log_format mosquitto in mosquitto's, word for word, so that log parsers and fail2ban
 * filters written for mosquitto read them; connection_messages false leaves them out
 * (as mosquitto does), except refusals and connections closed before their CONNECT was
 * accepted: those are not clients that came and went, and an operator wants to see
 * them (mosquitto leaves them out too). */
#include <stdio.h>
#include <string.h>

#include "session_int.h"

static bool
wanted(const struct broker *b)
{
    return b->conf.connection_messages;
}

/* mosquitto writes "ADDRESS:PORT" with the address bare, IPv6 too ("::1:50000"). */
static const char *
bare_peer(const struct conn *c, char *out, size_t outlen)
{
    const char *p = conn_peer(c);
    const char *end = p[0] == '[' ? strchr(p, ']') : NULL;
    if (!end)
        snprintf(out, outlen, "%s", p);
    else
        snprintf(out, outlen, "%.*s%s", (int)(end - p - 1), p + 1, end + 1);
    return out;
}

void
connlog_accepted(const struct broker *b, const struct conn *c)
{
    if (!wanted(b)) return;
    if (lq_log_mosquitto()) {
        char peer[80];
        lq_log_as_mosquitto(LQ_LOG_NOTICE, "New connection from %s on port %u.",
                            bare_peer(c, peer, sizeof(peer)), listener_port(conn_listener(c)));
        return;
    }
    if (lq_log_enabled(LQ_LOG_DEBUG)) lq_log(LQ_LOG_DEBUG, "%s: new connection", conn_peer(c));
}

void
connlog_connected(const struct session *s, const struct mqtt_connect *ck, bool present)
{
    if (!wanted(s->b)) return;
    if (lq_log_mosquitto()) {
        /* mosquitto's protocol numbers: 3.1 is 1, 3.1.1 is 2, 5.0 is 5 */
        int p = s->version == MQTT_V5 ? 5 : s->version == MQTT_V311 ? 2 : 1;
        char peer[80];
        const char *who = ck->bridge ? "bridge" : "client", *addr = "";
        if (s->conn) addr = bare_peer(s->conn, peer, sizeof(peer));
        if (s->username)
            lq_log_as_mosquitto(LQ_LOG_NOTICE,
                                "New %s connected from %s as %s (p%d, c%d, k%u, u'%s').", who, addr,
                                s->id, p, ck->clean_start ? 1 : 0, s->keepalive, s->username);
        else
            lq_log_as_mosquitto(LQ_LOG_NOTICE, "New %s connected from %s as %s (p%d, c%d, k%u).",
                                who, addr, s->id, p, ck->clean_start ? 1 : 0, s->keepalive);
        return;
    }
    session_log(s, LQ_LOG_INFO,
                "connected (MQTT %s%s%s, keep alive %u, session %s, expiry %u%s%s%s)",
                s->version == MQTT_V5     ? "5.0"
                : s->version == MQTT_V311 ? "3.1.1"
                                          : "3.1",
                s->conn && conn_is_tls(s->conn) ? " over TLS" : "",
                ck->bridge ? ", a bridge (try_private)" : "", s->keepalive,
                present ? "resumed" : "new", s->expiry, s->username ? ", username \"" : "",
                s->username ? s->username : "", s->username ? "\"" : "");
}

void
connlog_disconnected(const struct session *s, uint8_t reason)
{
    if (!wanted(s->b)) return;
    if (lq_log_mosquitto()) {
        lq_log_as_mosquitto(LQ_LOG_NOTICE, "Client %s disconnected.", s->id);
        return;
    }
    session_log(s, LQ_LOG_INFO, "disconnected (0x%02x %s)", reason, mqtt_rc_str(reason));
}

void
connlog_lost(const struct broker *b, const struct session *s, const char *why)
{
    if (!wanted(b)) return;
    if (lq_log_mosquitto()) {
        /* a reset too: mosquitto says the same */
        lq_log_as_mosquitto(LQ_LOG_NOTICE, "Client %s closed its connection.",
                            s ? s->id : "<unknown>");
        return;
    }
    if (s) session_log(s, LQ_LOG_NOTICE, "connection lost: %s", why);
}

/* mosquitto's words for why it closed a client's connection */
static void
mosquitto_closed(const char *id, uint8_t rc)
{
    const char *why;
    switch (rc) {
    case MQTT_RC_KEEP_ALIVE_TIMEOUT: why = "has exceeded timeout, disconnecting."; break;
    case MQTT_RC_MALFORMED_PACKET: why = "disconnected due to malformed packet."; break;
    case MQTT_RC_PACKET_TOO_LARGE: why = "disconnected due to oversize packet."; break;
    case MQTT_RC_ADMINISTRATIVE_ACTION: why = "been disconnected by administrative action."; break;
    case MQTT_RC_NOT_AUTHORIZED:
    case MQTT_RC_BAD_USERNAME_OR_PASSWORD: why = "disconnected, not authorised."; break;
    case MQTT_RC_RETAIN_NOT_SUPPORTED:
    case MQTT_RC_QOS_NOT_SUPPORTED:
        why = "disconnected due to QoS too high or retain not supported.";
        break;
    case MQTT_RC_SESSION_TAKEN_OVER: why = "already connected, closing old connection."; break;
    case MQTT_RC_QUOTA_EXCEEDED:
    case MQTT_RC_SERVER_SHUTTING_DOWN:
    case MQTT_RC_UNSPECIFIED_ERROR:
    case MQTT_RC_IMPLEMENTATION_SPECIFIC: why = "disconnected."; break;
    default: why = "disconnected due to protocol error."; break;
    }
    lq_log_as_mosquitto(LQ_LOG_NOTICE, "Client %s %s", id, why);
}

void
connlog_closed(const struct session *s, uint8_t rc, const char *detail)
{
    if (!wanted(s->b)) return;
    if (lq_log_mosquitto()) return mosquitto_closed(s->id, rc);
    session_log(s, rc == MQTT_RC_SESSION_TAKEN_OVER ? LQ_LOG_INFO : LQ_LOG_NOTICE,
                "disconnect 0x%02x %s (%s)", rc, mqtt_rc_str(rc), detail);
}

void
connlog_closed_early(const struct conn *c, uint8_t rc, const char *what)
{
    if (lq_log_mosquitto()) return mosquitto_closed("<unknown>", rc);
    lq_log(LQ_LOG_NOTICE, "%s: %s: closing", conn_peer(c), what);
}

void
connlog_bad_protocol(const struct conn *c, uint8_t version, bool mqtt)
{
    if (lq_log_mosquitto()) {
        char peer[80];
        bare_peer(c, peer, sizeof(peer));
        char *port = strrchr(peer, ':'); /* mosquitto names the address alone here */
        if (port) *port = '\0';
        if (mqtt)
            lq_log_as_mosquitto(LQ_LOG_NOTICE, "Invalid protocol version %u in CONNECT from %s.",
                                version, peer);
        return mosquitto_closed("<unknown>", MQTT_RC_PROTOCOL_ERROR);
    }
    if (mqtt)
        lq_log(LQ_LOG_NOTICE, "%s: unsupported protocol level %u: refused", conn_peer(c), version);
    else
        lq_log(LQ_LOG_NOTICE, "%s: not an MQTT CONNECT: closing", conn_peer(c));
}

void
connlog_refused(const struct conn *c, const struct mqtt_connect *ck, uint8_t rc, const char *why)
{
    if (lq_log_mosquitto() &&
        (rc == MQTT_RC_NOT_AUTHORIZED || rc == MQTT_RC_BAD_USERNAME_OR_PASSWORD)) {
        lq_log_as_mosquitto(LQ_LOG_NOTICE, "Client <unknown> disconnected, not authorised.");
        return;
    }
    if (lq_log_mosquitto()) {
        lq_log_as_mosquitto(LQ_LOG_NOTICE, "Client <unknown> disconnected due to protocol error.");
        return;
    }
    char id[80];
    snprintf(id, sizeof(id), "%.*s", (int)(ck->client_id.len < 64 ? ck->client_id.len : 64),
             (const char *)ck->client_id.p);
    lq_log(LQ_LOG_NOTICE, "client \"%s\" %s: connection refused: 0x%02x %s (%s)", id, conn_peer(c),
           rc, mqtt_rc_str(rc), why);
}
