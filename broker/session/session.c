/* SPDX-License-Identifier: MIT
 *
 * session: the life of a session apart from its messages. A session is made by
 * CONNECT, attached to one connection at a time, detached when that connection
 * goes, and ended when its expiry interval passes (or at once when it is 0).
 * Will messages are published here: at detach, after the will delay, or when the
 * session ends, whichever comes first [MQTT-3.1.2-8, 3.1.3-9].
 * Not here: queues and delivery (deliver.c), subscriptions (handle_subscribe.c). */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>

#include "bridge.h"
#include "hooks.h"
#include "session_int.h"
#include "tls.h"

struct session *
session_new(struct broker *b, const char *id, size_t len)
{
    struct session *s = lq_xcalloc(1, sizeof(*s) + len + 1); /* the id follows */
    s->b = b;
    s->id = memcpy((char *)(s + 1), id, len);
    s->id_len = len;
    s->next_pid = 1;
    registry_add(b, s);
    return s;
}

void
session_log(const struct session *s, unsigned level, const char *fmt, ...)
{
    if (!lq_log_enabled(level)) return;
    char msg[768];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    lq_log(level, "client \"%s\" %s: %s", s->id, s->conn ? conn_peer(s->conn) : "offline", msg);
}

void
session_set_will(struct session *s, struct msg *m, uint32_t delay)
{
    session_clear_will(s);
    struct will *w = lq_xcalloc(1, sizeof(*w));
    w->m = m;
    w->delay = delay;
    w->username = s->username ? lq_xstrdup(s->username) : NULL;
    w->version = s->version;
    if (s->conn) {
        w->address = lq_xstrdup(conn_peer(s->conn));
        w->listener = listener_name(conn_listener(s->conn));
        w->cert = tls_identity_dup(conn_tls_identity(s->conn));
    }
    s->will = w;
}

static void
will_free(struct will *w)
{
    msg_unref(w->m);
    free(w->username);
    free(w->address);
    tls_identity_free(w->cert);
    free(w);
}

void
session_clear_will(struct session *s)
{
    if (s->will_ev) event_del(s->will_ev);
    if (!s->will) return;
    will_free(s->will);
    s->will = NULL;
}

static void
publish_will(struct session *s)
{
    struct will *w = s->will;
    s->will = NULL;
    if (s->will_ev) event_del(s->will_ev);
    struct broker *b = s->b;
    session_log(s, LQ_LOG_INFO, "publishing will on \"%s\"", w->m->topic);
    b->ctr.msgs_received++;
    /* through the hooks like any message the client published */
    struct hook_client cl = {.id = s->id,
                             .username = w->username,
                             .address = w->address,
                             .version = w->version,
                             .cert = w->cert,
                             .listener = w->listener};
    struct route_result r;
    broker_publish(b, w->m, s, &cl, NULL, DELIVER_NO_HOLD, &r);
    will_free(w);
}

static void
will_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct session *s = arg;
    if (!s->will) return;
    publish_will(s);
    persist_session(s);
}

static void
expiry_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct session *s = arg;
    session_log(s, LQ_LOG_INFO, "session expired");
    session_end(s);
}

static void
arm(struct session *s, struct event **ev, event_callback_fn fn, uint32_t seconds)
{
    if (!*ev) *ev = evtimer_new(s->b->base, fn, s);
    struct timeval tv = {.tv_sec = seconds, .tv_usec = 0};
    if (!*ev || evtimer_add(*ev, &tv) < 0)
        session_log(s, LQ_LOG_ERR, "cannot arm a session timer (will delay or expiry)");
}

void
session_arm_expiry(struct session *s)
{
    if (s->expiry == EXPIRY_NEVER) return;
    arm(s, &s->expiry_ev, expiry_cb, s->expiry);
}

static void
reset_connection_state(struct session *s)
{
    hold_forget(s);          /* as publisher and as subscriber */
    session_subacks_drop(s); /* the connection they were for is gone */
    if (s->aliases) {
        for (size_t i = 0; i <= TOPIC_ALIAS_MAX; i++) free(s->aliases->in[i]);
        for (size_t i = 0; i < s->aliases->nout; i++) free(s->aliases->out[i].topic);
        free(s->aliases);
        s->aliases = NULL;
    }
}

void
session_attach(struct session *s, struct conn *c)
{
    s->conn = c;
    conn_set_owner(c, s);
    if (s->expiry_ev) event_del(s->expiry_ev);
    /* a new connection before the will delay elapsed: no will [MQTT-3.1.3-9] */
    session_clear_will(s);
    reset_connection_state(s);
}

void
session_detach(struct session *s, bool send_will)
{
    if (s->conn) conn_set_owner(s->conn, NULL);
    s->conn = NULL;
    s->connected = false;
    reset_connection_state(s);
    if (s->will) {
        if (!send_will)
            session_clear_will(s);
        else if (s->will->delay == 0 || s->expiry == 0)
            publish_will(s);
        else
            arm(s, &s->will_ev, will_cb, s->will->delay < s->expiry ? s->will->delay : s->expiry);
    }
    if (s->expiry == 0 && !s->bridge) { /* a bridge's lives as long as its bridge */
        session_end(s);
        return;
    }
    persist_session(s); /* offline since now, and its will */
    if (s->bridge) return;
    session_arm_expiry(s);
}

void
session_restore_timers(struct session *s, uint32_t gone)
{
    if (s->will) {
        uint32_t delay = s->will->delay < s->expiry ? s->will->delay : s->expiry;
        arm(s, &s->will_ev, will_cb, delay > gone ? delay - gone : 0);
    }
    if (s->expiry != EXPIRY_NEVER)
        arm(s, &s->expiry_ev, expiry_cb, s->expiry > gone ? s->expiry - gone : 0);
}

void
session_end(struct session *s)
{
    struct broker *b = s->b;
    persist_session_end(s);
    if (s->conn) conn_set_owner(s->conn, NULL);
    session_unsubscribe_all(s);
    access_unbind(s);
    if (s->will) publish_will(s); /* the session ends before the will delay */
    session_free_queues(s);
    reset_connection_state(s);
    if (s->will_ev) event_free(s->will_ev);
    if (s->expiry_ev) event_free(s->expiry_ev);
    registry_remove(b, s);
    free(s->in_pids);
    free(s->username);
    free(s);
}

void
send_disconnect(struct conn *c, uint8_t version, uint8_t rc)
{
    if (version != MQTT_V5) return; /* v3 has no server DISCONNECT */
    struct mqtt_disconnect d = {.reason = rc};
    uint8_t out[16];
    size_t n = mqtt_encode_disconnect(&d, version, out, sizeof(out));
    if (n <= sizeof(out)) conn_write(c, out, n);
}

void
session_disconnect(struct session *s, uint8_t rc, const char *detail)
{
    struct conn *c = s->conn;
    if (!c) return;
    if (s->bridge) { /* the link is the bridge's: it reconnects */
        bridge_disconnect(s->bridge, rc, detail);
        return;
    }
    connlog_closed(s, rc, detail);
    if (s->connected) send_disconnect(c, s->version, rc);
    session_detach(s, true); /* may end s */
    conn_close(c);
}
