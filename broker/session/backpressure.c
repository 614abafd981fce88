/* SPDX-License-Identifier: MIT
 *
 * backpressure: what happens when a subscriber cannot keep up.
 *
 * A QoS 1/2 message over an online subscriber's queue bound is still queued (nothing
 * acknowledged is lost) and its publisher is held back by the protocol's own means: its
 * PUBACKs and PUBRECs are withheld, so an MQTT 5 client stops at our Receive Maximum.
 * The publisher's connection is still read: PINGREQ, SUBSCRIBE, its acks and its QoS 0
 * messages go on being served. A 3.1.x client, which knows no Receive Maximum, is no
 * longer read once it has sent more than that many unacknowledged.
 *
 * A hold lasts while the subscribers that caused it make progress (an ack, a message
 * written; noted per message as a flag, timed by the check every max_hold_time / 4). One that made
 * none for max_hold_time pays for it, not the publishers: a clean session is disconnected with
 * 0x97, a persistent one keeps its bounded queue and further messages for it are dropped (counted,
 * logged once) until it drains. Held publishers are released when a subscriber drains to half its
 * bound, or pays. */
#include <stdlib.h>

#include <event2/event.h>

#include "cluster.h"
#include "session_int.h"

#define TICK_MAX_MS   100 /* the slow ones are checked at least this often */
#define PACE_STALL_MS 200 /* paced, no progress for this long: a stall, not a pace */

/* ---- held publishers ---- */

void
hold_ack(struct session *s, uint8_t type, uint16_t pid, uint8_t rc)
{
    struct broker *b = s->b;
    struct hold *h = s->hold;
    if (!h) {
        h = lq_xmalloc(sizeof(*h) + 8 * sizeof(h->a[0]));
        h->n = h->nqos1 = 0;
        h->cap = 8;
        h->conn_paused = false;
        s->hold = h;
        if (b->nheld == b->cap_held) {
            b->cap_held = b->cap_held ? 2 * b->cap_held : 16;
            b->held = lq_xrealloc(b->held, b->cap_held * sizeof(*b->held));
        }
        b->held[b->nheld++] = s;
        b->ctr.publishers_held++;
        session_log(s, LQ_LOG_DEBUG, "held back: a subscriber is over its queue bound");
    }
    if (h->n == h->cap) {
        h->cap *= 2;
        h = s->hold = lq_xrealloc(h, sizeof(*h) + h->cap * sizeof(h->a[0]));
    }
    h->a[h->n++] = (struct held_ack){.type = type, .rc = rc, .pid = pid};
    if (type == MQTT_PUBACK) h->nqos1++;
    /* a 3.1.x client does not know our Receive Maximum: past it, it is not read (a v5
     * client going past it is disconnected by handle_publish) */
    if (s->version != MQTT_V5 && !h->conn_paused && s->conn &&
        h->nqos1 + s->nin > broker_receive_max(b)) {
        h->conn_paused = true;
        conn_pause(s->conn);
    }
}

static void
hold_remove(struct broker *b, struct session *s)
{
    for (size_t i = 0; i < b->nheld; i++) {
        if (b->held[i] == s) {
            b->held[i] = b->held[--b->nheld];
            break;
        }
    }
    free(s->hold);
    s->hold = NULL;
}

void
hold_release_all(struct broker *b)
{
    /* all at once: a publisher still blocked is held again by its next message; not
     * while the cluster holds them (cluster_ready releases them after) */
    if (cluster_over(b->cluster)) return;
    size_t n = b->nheld;
    b->nheld = 0;
    for (size_t i = 0; i < n; i++) {
        struct session *s = b->held[i];
        struct hold *h = s->hold;
        s->hold = NULL;
        session_log(s, LQ_LOG_DEBUG, "released: %u acknowledgements sent", h->n);
        for (uint32_t k = 0; k < h->n; k++) send_ack(s, h->a[k].type, h->a[k].pid, h->a[k].rc);
        if (h->conn_paused && s->conn) conn_resume(s->conn);
        free(h);
    }
}

/* ---- subscribers over their bound ---- */

static void slow_tick(evutil_socket_t fd, short what, void *arg);

static void
slow_arm(struct broker *b)
{
    if (!b->slow_ev) b->slow_ev = evtimer_new(b->base, slow_tick, b);
    if (evtimer_pending(b->slow_ev, NULL)) return;
    uint32_t ms = b->conf.max_hold_time_ms / 4;
    if (ms > TICK_MAX_MS) ms = TICK_MAX_MS;
    if (ms < 10) ms = 10;
    struct timeval tv = {.tv_sec = 0, .tv_usec = (suseconds_t)ms * 1000};
    if (!b->slow_ev || evtimer_add(b->slow_ev, &tv) < 0)
        lq_log(LQ_LOG_ERR, "cannot arm the slow-consumer check: holds end when queues drain");
}

void
slow_mark(struct session *s)
{
    struct broker *b = s->b;
    s->paced = false; /* past its bound now: max_hold_time's rules */
    if (s->over_bound) return;
    s->over_bound = true;
    s->progressed = false;
    s->stalled_since = (uint32_t)lq_now_ms();
    if (b->nslow == b->cap_slow) {
        b->cap_slow = b->cap_slow ? 2 * b->cap_slow : 16;
        b->slow = lq_xrealloc(b->slow, b->cap_slow * sizeof(*b->slow));
    }
    b->slow[b->nslow++] = s;
    slow_arm(b);
}

void
pace_mark(struct session *s)
{
    if (s->over_bound) return;
    slow_mark(s);
    s->paced = true;
}

static void
slow_remove(struct broker *b, struct session *s)
{
    s->paced = false;
    if (!s->over_bound) return;
    s->over_bound = false;
    for (size_t i = 0; i < b->nslow; i++) {
        if (b->slow[i] == s) {
            b->slow[i] = b->slow[--b->nslow];
            return;
        }
    }
}

void
slow_drained(struct session *s)
{
    slow_remove(s->b, s);
    if (s->b->nheld) hold_release_all(s->b);
}

/* How long s has made no progress (wraps safely: holds last seconds, not 49 days). */
static uint32_t
stalled_ms(const struct session *s)
{
    return (uint32_t)lq_now_ms() - s->stalled_since;
}

/* s made no progress for max_hold_time with publishers held for it. */
static void
slow_pays(struct session *s)
{
    struct broker *b = s->b;
    char why[160];
    snprintf(why, sizeof(why),
             "slow consumer: no progress for %.1f s with %u messages, %llu bytes queued",
             (double)stalled_ms(s) / 1000, s->nqueued, (unsigned long long)s->qbytes);
    if (s->expiry == 0) {
        b->ctr.slow_consumers_disconnected++;
        session_disconnect(s, MQTT_RC_QUOTA_EXCEEDED, why); /* ends s */
        return;
    }
    b->ctr.slow_consumers_shedding++;
    s->shedding = true;
    session_log(s, LQ_LOG_WARNING, "%s: further messages for it are dropped until it drains", why);
}

static void
slow_tick(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct broker *b = arg;
    bool paid = false;
    uint32_t now = (uint32_t)lq_now_ms();
    for (size_t i = 0; i < b->nslow;) {
        struct session *s = b->slow[i];
        if (s->progressed) { /* progress is noted per message, timed here per tick */
            s->progressed = false;
            s->stalled_since = now;
        }
        if (s->paced && now - s->stalled_since >= PACE_STALL_MS) {
            /* not draining at all: a stall, not a pace to keep. Its publishers go on
             * until its bound, where max_hold_time's rules hold them */
            slow_remove(b, s);
            s->pace_off = true;
            paid = true;
            continue;
        }
        /* a bridge's queue waits for its remote: its publishers stay held */
        if (s->bridge || now - s->stalled_since < b->conf.max_hold_time_ms) {
            i++;
            continue;
        }
        slow_remove(b, s); /* slot i now holds another one */
        slow_pays(s);
        paid = true;
    }
    if (paid && b->nheld) hold_release_all(b);
    if (b->nslow) slow_arm(b);
}

void
hold_forget(struct session *s)
{
    struct broker *b = s->b;
    bool was_slow = s->over_bound;
    slow_remove(b, s);
    s->shedding = false;
    s->pace_off = false;
    if (s->hold) hold_remove(b, s);
    /* offline sessions refuse instead of holding publishers */
    if (was_slow && b->nheld) hold_release_all(b);
}

void
hold_fini(struct broker *b)
{
    free(b->held);
    free(b->slow);
    if (b->slow_ev) event_free(b->slow_ev);
}
