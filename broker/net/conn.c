/* SPDX-License-Identifier: MIT
 *
 * conn: one client connection, accepted by a listener or dialed by a dialer (a
 * bridge's). Frames packets off the input buffer and hands them to the owner; queues
 * output and reports when it drained. Writes are coalesced:
 * the write event fires once the loop is done with this iteration's callbacks, and
 * everything queued by then leaves in one write.
 * Closing is a state change; the free happens from the listener's reap event once
 * the output was flushed (and the peer stopped sending, see linger), or from the
 * deadline wheel when the grace period ran out. */
#include <stdlib.h>
#include <string.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

#include <errno.h>

#include <event2/buffer.h>
#include <event2/event.h>

#include "hs_worker.h"
#include "lq.h"
#include "mqtt.h"
#include "net_int.h"
#include "tls.h"

#define OUT_HIGH       (256 * 1024)  /* stop producing output above this */
#define OUT_LOW        (32 * 1024)   /* on_drain fires when output falls to this */
#define OUT_READ_LIMIT (1024 * 1024) /* output the peer leaves unread: its input waits */
#define CLOSE_GRACE_MS 2000          /* how long a closing conn may take to flush */
#define LINGER_MS      2000          /* then how long it reads what the peer still sends */
#define LINGER_BYTES   (64 * 1024)   /* and how much of it */
#define TLS_SETTLE_MS  1000          /* after a handshake, before its buffers are trimmed */
#define QUIET_MS       250           /* a TLS connection silent this long: out of admission */

static bool
handshaking(const struct conn *c)
{
    return c->t && (c->job || !tls_conn_established(c->t->tls)); /* job: not ours to read */
}

/* The read event lives right after the conn, in the same allocation; then a TLS
 * connection's struct conn_tls, then the peer's name. Each is aligned to 8 (pointers
 * and 64-bit counters), not 16: an idle connection is mostly this allocation, and
 * malloc rounds it to 16 anyway. */
#define ALIGN8(n) (((n) + 7) & ~(size_t)7)
#define CONN_SIZE ALIGN8(sizeof(struct conn))

static struct event *
conn_rev(struct conn *c)
{
    return (struct event *)(void *)((char *)c + CONN_SIZE);
}

static size_t
rev_size(void)
{
    static size_t size;
    if (!size) size = ALIGN8(event_get_struct_event_size());
    return size;
}

/* ---- deadlines: the wheel and the reap list ---- */

static void
unlink_timed(struct conn *c)
{
    if (!c->wpprev) return;
    if (c->wnext) c->wnext->wpprev = c->wpprev;
    *c->wpprev = c->wnext;
    c->wnext = NULL;
    c->wpprev = NULL;
}

static void
push_front(struct conn **head, struct conn *c)
{
    c->wnext = *head;
    if (*head) (*head)->wpprev = &c->wnext;
    *head = c;
    c->wpprev = head;
}

static bool
on_wheel(const struct conn *c)
{
    return c->wpprev && c->due_ms;
}

/* Look at c again at due_ms (0: never). Activity does not move a conn: when its
 * slot comes round, a deadline that moved puts it back further on. */
static void
wheel_put(struct conn *c, uint64_t due_ms)
{
    struct listener *l = c->l;
    if (on_wheel(c)) l->nwheel--;
    unlink_timed(c);
    c->due_ms = due_ms;
    if (!due_ms) return;
    uint64_t t = due_ms / WHEEL_TICK_MS;
    if (t <= l->last_tick) t = l->last_tick + 1;
    push_front(&l->wheel[t % WHEEL_SLOTS], c);
    l->nwheel++;
    if (!evtimer_pending(l->tick, NULL)) {
        struct timeval tv = {0, WHEEL_TICK_MS * 1000};
        if (evtimer_add(l->tick, &tv) < 0)
            lq_log(LQ_LOG_ERR, "listener: cannot arm the deadline wheel: deadlines wait");
    }
}

/* Free c once the callbacks of this loop iteration are done with it. */
static void
reap_soon(struct conn *c)
{
    if (on_wheel(c)) c->l->nwheel--;
    unlink_timed(c);
    c->due_ms = 0;
    push_front(&c->l->reap, c);
    event_active(c->l->reap_ev, EV_TIMEOUT, 0);
}

static void
reap_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct listener *l = arg;
    while (l->reap) conn_free(l->reap); /* conn_free unlinks it */
}

static void count_handshake(struct conn *c, bool on);

/* A dialed conn's handshake: the dial's deadline (conn_set_deadline) runs through it. */
static uint64_t
dial_due(const struct conn *c)
{
    uint64_t hs = c->t->hs_deadline_ms;
    return c->deadline_ms && c->deadline_ms < hs ? c->deadline_ms : hs;
}

/* c's deadline passed: the close grace or linger, the TLS handshake or the keep-alive. */
static void
conn_due(struct conn *c, uint64_t now)
{
    if (c->closing) { /* out of time to flush, or to linger */
        conn_free(c);
        return;
    }
    if (handshaking(c)) {
        if (now >= c->t->hs_deadline_ms) {
            lq_log(LQ_LOG_NOTICE, "%s: TLS handshake not finished in time: closing", conn_peer(c));
            conn_close(c);
            c->l->ops->on_lost(c, "TLS handshake timeout", c->l->ud);
            return;
        }
        if (c->dialed) {
            if (c->deadline_ms && now >= c->deadline_ms)
                c->l->ops->on_keepalive(c, c->l->ud);
            else
                wheel_put(c, dial_due(c));
            return;
        }
        if (!c->t->spoke && now >= c->t->quiet_ms) count_handshake(c, false);
        wheel_put(c, !c->t->spoke && c->t->hs_counted ? c->t->quiet_ms : c->t->hs_deadline_ms);
        return;
    }
    if (c->t && !c->job) { /* after the handshake and large records, once a period */
        tls_conn_shrink(c->t->tls);
        c->t->settle_ms = 0;
    }
    /* a deadline (before CONNECT) holds however much arrived meanwhile */
    if (c->deadline_ms) {
        if (now >= c->deadline_ms)
            c->l->ops->on_keepalive(c, c->l->ud);
        else
            wheel_put(c, c->deadline_ms);
        return;
    }
    if (!c->keepalive_ms) return;
    if (now - c->last_rx_ms >= c->keepalive_ms) {
        c->l->ops->on_keepalive(c, c->l->ud);
        return;
    }
    wheel_put(c, c->last_rx_ms + c->keepalive_ms);
}

static void
tick_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct listener *l = arg;
    uint64_t now = lq_now_ms(), t = now / WHEEL_TICK_MS;
    uint64_t from = l->last_tick + 1;
    if (t - l->last_tick > WHEEL_SLOTS) from = t - WHEEL_SLOTS + 1; /* a whole turn late */
    l->last_tick = t; /* conns put back now go to later slots */
    for (uint64_t k = from; k <= t; k++) {
        struct conn *due = NULL; /* the slot, taken whole: handlers may re-slot */
        struct conn **slot = &l->wheel[k % WHEEL_SLOTS];
        while (*slot) {
            struct conn *c = *slot;
            unlink_timed(c);
            push_front(&due, c);
        }
        while (due) {
            struct conn *c = due;
            unlink_timed(c);
            l->nwheel--;
            if (c->due_ms > now) {
                wheel_put(c, c->due_ms); /* a later turn of the wheel */
                continue;
            }
            c->due_ms = 0;
            conn_due(c, now);
        }
    }
    if (l->nwheel && !evtimer_pending(l->tick, NULL)) {
        struct timeval tv = {0, WHEEL_TICK_MS * 1000};
        if (evtimer_add(l->tick, &tv) < 0)
            lq_log(LQ_LOG_ERR, "listener: cannot arm the deadline wheel: deadlines wait");
    }
}

static void write_listed_cb(evutil_socket_t fd, short what, void *arg);

bool
conns_init(struct listener *l)
{
    l->last_tick = lq_now_ms() / WHEEL_TICK_MS;
    l->tick = evtimer_new(l->base, tick_cb, l);
    l->reap_ev = event_new(l->base, -1, 0, reap_cb, l);
    l->flush_ev = event_new(l->base, -1, 0, write_listed_cb, l);
    return l->tick && l->reap_ev && l->flush_ev;
}

void
net_stop_workers(void)
{
    hs_worker_stop();
}

void
conns_fini(struct listener *l)
{
    while (l->conns) conn_free(l->conns);
    if (l->tick) event_free(l->tick);
    if (l->reap_ev) event_free(l->reap_ev);
    if (l->flush_ev) event_free(l->flush_ev);
    free(l->flush);
    free(l->gated);
}

/* Buffers come and go with traffic: an idle connection holds none. The listener
 * keeps a few empty ones so that a busy connection does not allocate per read. */
static struct evbuffer *
buf_get(struct listener *l)
{
    return l->nspare ? l->spare[--l->nspare] : evbuffer_new();
}

/* An empty evbuffer can still hold a chain that a read or a reservation made and
 * nothing filled (16 KiB for a TLS record), and evbuffer_drain ignores an empty
 * buffer: one byte in and out frees every chain. */
static void
buf_trim(struct evbuffer *b)
{
    if (evbuffer_get_length(b) == 0 && evbuffer_add(b, "", 1) == 0) evbuffer_drain(b, 1);
}

static void
buf_put(struct listener *l, struct evbuffer **b)
{
    buf_trim(*b);
    if (l->nspare < sizeof(l->spare) / sizeof(l->spare[0]))
        l->spare[l->nspare++] = *b;
    else
        evbuffer_free(*b);
    *b = NULL;
}

struct evbuffer *
conn_buf_get(struct listener *l)
{
    return buf_get(l);
}

void
conn_buf_put(struct listener *l, struct evbuffer **b)
{
    if (*b) buf_put(l, b);
}

/* Where packets are framed from, and where output is queued (made when needed). */
static struct evbuffer *
inbuf(const struct conn *c)
{
    return c->ws ? c->ws->in : c->t ? c->t->in : c->in;
}

static void on_writable(evutil_socket_t fd, short what, void *arg);
enum { BROKEN_NOT, BROKEN_NO_MEMORY, BROKEN_NO_EVENT };
static const char *const broken_why[] = {NULL, "out of memory for output", "cannot arm an event"};
static void close_soon(struct conn *c, uint8_t why, const char *detail);
static void arm_event(struct conn *c, struct event *ev, const char *what);

/* Wait for the socket to take more (it was full). */
static void
wait_writable(struct conn *c)
{
    if (c->wev) return;
    struct listener *l = c->l;
    if (l->nspare_wev) {
        c->wev = l->spare_wev[--l->nspare_wev];
        event_assign(c->wev, l->base, c->fd, EV_WRITE | EV_PERSIST, on_writable, c);
    } else {
        c->wev = event_new(l->base, c->fd, EV_WRITE | EV_PERSIST, on_writable, c);
    }
    if (!c->wev) {
        close_soon(c, BROKEN_NO_MEMORY, "write event");
        return;
    }
    arm_event(c, c->wev, "write event");
}

/* Output was queued: it leaves when this loop iteration's callbacks are done, all of
 * it in one write per connection. */
static void
list_for_flush(struct conn *c)
{
    struct listener *l = c->l;
    if (l->nflush == l->cap_flush) {
        l->cap_flush = l->cap_flush ? 2 * l->cap_flush : 64;
        l->flush = lq_xrealloc(l->flush, l->cap_flush * sizeof(*l->flush));
    }
    l->flush[l->nflush++] = c;
    c->flush_slot = l->nflush;
    if (l->nflush == 1) event_active(l->flush_ev, EV_WRITE, 0);
}

static void
want_write(struct conn *c)
{
    if ((!c->out || !evbuffer_get_length(c->out)) && !(c->ws && !c->t && ws_pending(c))) return;
    if (c->wev || c->flush_slot) return; /* waiting for the socket, or already listed */
    list_for_flush(c);
}

/* Output could not be queued (out of memory) or an event not armed: the stream has a
 * hole or would stall, so nothing more is sent, and the conn is closed as lost from
 * the flush, outside the caller, which may be in the middle of routing (issue 12.22). */
static void
close_soon(struct conn *c, uint8_t why, const char *detail)
{
    static struct lq_log_limit limit;
    if (c->broken) return;
    c->broken = why;
    lq_log_limited(&limit, LQ_LOG_ERR, "%s: %s (%s): closing", conn_peer(c), broken_why[why],
                   detail);
    if (!c->flush_slot && !c->connecting) list_for_flush(c); /* connecting: on_connected */
}

static void
out_failed(struct conn *c, size_t n)
{
    char d[48];
    snprintf(d, sizeof(d), "%zu bytes", n);
    close_soon(c, BROKEN_NO_MEMORY, d);
}

/* Arm c's read or write event; a failure (the kernel's or libevent's) closes c. */
static void
arm_event(struct conn *c, struct event *ev, const char *what)
{
    if (event_add(ev, NULL) != 0) close_soon(c, BROKEN_NO_EVENT, what);
}

/* Output all written: the write event goes back to the listener's spares. */
static void
write_done(struct conn *c)
{
    struct listener *l = c->l;
    event_del(c->wev);
    if (l->nspare_wev < sizeof(l->spare_wev) / sizeof(l->spare_wev[0]))
        l->spare_wev[l->nspare_wev++] = c->wev;
    else
        event_free(c->wev);
    c->wev = NULL;
}

/* ---- durability gates: output that waits for the journal ---- */

static void queued(struct conn *c);
static void linger(struct conn *c);
static size_t out_len(const struct conn *c);

struct gate_mark {
    uint64_t seq; /* the held bytes from `at` on wait for it */
    size_t at;
};
struct conn_gate {
    struct evbuffer *held;
    struct gate_mark *marks; /* seq and at both increase */
    uint32_t n, cap;
    uint32_t slot; /* 1 + index in l->gated */
};

static bool
gated(const struct conn *c)
{
    return c->gate && c->gate->n;
}

static size_t
held_len(const struct conn *c)
{
    return c->gate ? evbuffer_get_length(c->gate->held) : 0;
}

static void
gate_free(struct conn *c)
{
    struct conn_gate *g = c->gate;
    if (!g) return;
    struct listener *l = c->l;
    if (g->slot) { /* the last one takes its place */
        struct conn *last = l->gated[--l->ngated];
        l->gated[g->slot - 1] = last;
        last->gate->slot = g->slot;
    }
    evbuffer_free(g->held);
    free(g->marks);
    free(g);
    c->gate = NULL;
}

void
conn_gate(struct conn *c, uint64_t seq)
{
    if (c->broken) return;
    struct conn_gate *g = c->gate;
    if (!g) {
        struct evbuffer *held = evbuffer_new();
        if (!held) {
            close_soon(c, BROKEN_NO_MEMORY, "held output");
            return;
        }
        g = c->gate = lq_xcalloc(1, sizeof(*g));
        g->held = held;
        struct listener *l = c->l;
        if (l->ngated == l->cap_gated) {
            l->cap_gated = l->cap_gated ? 2 * l->cap_gated : 64;
            l->gated = lq_xrealloc(l->gated, l->cap_gated * sizeof(*l->gated));
        }
        l->gated[l->ngated++] = c;
        g->slot = l->ngated;
    }
    size_t at = evbuffer_get_length(g->held);
    if (g->n && g->marks[g->n - 1].at == at) { /* nothing written since the last mark */
        if (seq > g->marks[g->n - 1].seq) g->marks[g->n - 1].seq = seq;
        return;
    }
    if (g->n && seq < g->marks[g->n - 1].seq) seq = g->marks[g->n - 1].seq;
    if (g->n == g->cap) {
        g->cap = g->cap ? 2 * g->cap : 4;
        g->marks = lq_xrealloc(g->marks, g->cap * sizeof(*g->marks));
    }
    g->marks[g->n++] = (struct gate_mark){seq, at};
}

uint64_t
conn_gate_seq(const struct conn *c)
{
    return gated(c) ? c->gate->marks[c->gate->n - 1].seq : 0;
}

static void
gate_release(struct conn *c, uint64_t durable)
{
    struct conn_gate *g = c->gate;
    uint32_t k = 0;
    while (k < g->n && g->marks[k].seq <= durable) k++;
    if (!k) return;
    size_t upto = k < g->n ? g->marks[k].at : evbuffer_get_length(g->held);
    g->n -= k;
    memmove(g->marks, g->marks + k, g->n * sizeof(*g->marks));
    for (uint32_t i = 0; i < g->n; i++) g->marks[i].at -= upto;
    struct evbuffer **to = c->ws ? &c->ws->out : c->t ? &c->t->out : &c->out;
    struct evbuffer *dst = *to ? *to : (*to = buf_get(c->l));
    if (upto && (!dst || evbuffer_remove_buffer(g->held, dst, upto) != (int)upto)) {
        close_soon(c, BROKEN_NO_MEMORY, "releasing held output");
        return;
    }
    if (!g->n) gate_free(c);
    queued(c);
    want_write(c);
    if (c->closing && !out_len(c) && !gated(c)) linger(c);
}

void
listener_release(struct listener *l, uint64_t durable)
{
    for (uint32_t i = l->ngated; i-- > 0;) /* a released one leaves: the last takes its slot */
        if (i < l->ngated) gate_release(l->gated[i], durable);
}

size_t
listener_gated(const struct listener *l)
{
    return l->ngated;
}

static struct evbuffer *
outbuf(struct conn *c)
{
    if (gated(c)) return c->gate->held;
    if (c->ws) return c->ws->out ? c->ws->out : (c->ws->out = buf_get(c->l));
    if (c->t) return c->t->out;
    if (!c->out) c->out = buf_get(c->l);
    return c->out;
}

static size_t
out_len(const struct conn *c)
{
    return c->out ? evbuffer_get_length(c->out) : 0;
}

struct evbuffer *
conn_raw_out(struct conn *c)
{
    if (c->t) return c->t->out;
    if (!c->out && !(c->out = buf_get(c->l))) close_soon(c, BROKEN_NO_MEMORY, "output");
    return c->out;
}

void
conn_raw_written(struct conn *c)
{
    queued(c);
    want_write(c);
}

/* Encrypt what was queued; runs once per loop iteration (flush_ev), and at close. */
static void
tls_flush(struct conn *c)
{
    if (c->job || !tls_conn_established(c->t->tls)) return;
    if (c->ws) ws_wrap(c);
    if (!evbuffer_get_length(c->t->out)) return;
    int rc = tls_conn_output(c->t->tls, c->t->out);
    want_write(c);
    if (rc < 0) {
        evbuffer_drain(c->t->out, evbuffer_get_length(c->t->out));
        if (!c->closing) {
            lq_log(LQ_LOG_NOTICE, "%s: TLS write failed: closing", conn_peer(c));
            conn_close(c);
            c->l->ops->on_lost(c, "TLS write failed", c->l->ud);
        }
    }
}

static void
flush_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    tls_flush(arg);
}

static void
queued(struct conn *c)
{
    if (c->t) event_active(c->t->flush_ev, EV_WRITE, 0); /* no-op when already active */
}

static void
log_established(const struct conn *c)
{
    char d[128], san[512] = "";
    const struct tls_identity *id = tls_conn_identity(c->t->tls);
    tls_conn_describe(c->t->tls, d, sizeof(d));
    if (!id) {
        lq_log(LQ_LOG_DEBUG, "%s: TLS established (%s, no %s certificate)", conn_peer(c), d,
               c->dialed ? "server" : "client");
        return;
    }
    size_t used = 0;
    for (size_t i = 0; i < id->nsan && used < sizeof(san); i++)
        used += (size_t)snprintf(san + used, sizeof(san) - used, "%s%s", i ? " " : "", id->san[i]);
    lq_log(LQ_LOG_DEBUG,
           "%s: TLS established (%s): subject \"%s\", SAN [%s], serial %s, SHA-256 %s",
           conn_peer(c), d, id->subject, san, id->serial, id->fingerprint);
}

/* c's handshake ended (done, failed, or its conn is going): one fewer under way,
 * which may let its listener accept again. */
static void
handshake_over(struct conn *c)
{
    if (!c->t || !c->t->hs_counted) return;
    c->t->hs_counted = false;
    c->l->nhandshaking--;
    hs_worker_note_handshake(c->t->hs_work_us);
    listener_admission(c->l);
}

/* Admission counts a TLS connection from its accept (a storm's ClientHellos are read
 * a loop turn or more later: counted then, too many would be let in first), and stops
 * counting one that sent nothing in its first QUIET_MS: it is no work for the
 * threads, and a client could open thousands of them for free to stop the listener
 * accepting. Its first bytes count it again. */
static void
count_handshake(struct conn *c, bool on)
{
    if (c->t->hs_counted == on) return;
    c->t->hs_counted = on;
    if (on)
        c->l->nhandshaking++;
    else
        c->l->nhandshaking--;
    listener_admission(c->l);
}

static void
handshake_speaks(struct conn *c)
{
    if (c->t->spoke) return;
    c->t->spoke = true;
    count_handshake(c, true);
}

/* What a TLS input step gave. False when there is nothing to frame (handshake under
 * way, or the connection failed and is closing). */
static bool
tls_result(struct conn *c, enum tls_status st, bool was, const char *why)
{
    want_write(c); /* handshake records, alerts */
    if (st == TLS_FAILED) {
        lq_log(LQ_LOG_NOTICE, "%s: %s: %s", conn_peer(c),
               was ? "TLS error" : "TLS handshake failed", why);
        handshake_over(c);
        conn_close(c);
        if (c->dialed && !was) { /* a bridge's last error: say what failed */
            char msg[400];
            snprintf(msg, sizeof(msg), "TLS handshake failed: %s", why);
            c->l->ops->on_lost(c, msg, c->l->ud);
            return false;
        }
        c->l->ops->on_lost(c, why, c->l->ud);
        return false;
    }
    if (st == TLS_HANDSHAKING) return false;
    if (!was) { /* the CONNECT deadline starts now: the handshake had its own */
        handshake_over(c);
        if (lq_log_enabled(LQ_LOG_DEBUG)) log_established(c);
        /* the certificates are read and sent: the buffers' pages may go back once the
         * connection has settled (not at once: most connections that close within a
         * second would pay for it) */
        c->t->settle_ms = lq_now_ms() + TLS_SETTLE_MS;
        c->last_rx_ms = lq_now_ms();
        if (c->t->deadline_len_ms) c->deadline_ms = c->last_rx_ms + c->t->deadline_len_ms;
        conn_set_keepalive(c, c->keepalive_ms);
        queued(c);
    }
    if (st == TLS_CLOSED) c->peer_closed = true;
    return true;
}

static void handshake_done(struct hs_job *j);

/* TLS input: the handshake goes to the handshake thread (reading stops until it
 * comes back); once established, records are decrypted into tls_in here. A dialed
 * conn's handshake is a client's, cheap: it runs here. */
static bool
tls_read(struct conn *c)
{
    if (c->job) return false;
    bool was = tls_conn_established(c->t->tls);
    if (!was) handshake_speaks(c);
    if (!was && !c->dialed && hs_worker_start(c->l->base, handshake_done)) {
        struct hs_job *j = lq_xcalloc(1, sizeof(*j));
        j->tls = c->t->tls;
        j->plain = c->t->in;
        j->tx = evbuffer_new();
        j->owner = c;
        j->first = c->t->hs_steps == 0;
        if (c->t->hs_steps < UINT16_MAX) c->t->hs_steps++;
        if (j->tx) {
            tls_conn_set_tx(c->t->tls, j->tx);
            c->job = j;
            event_del(conn_rev(c));
            hs_worker_submit(j);
            return false;
        }
        free(j); /* no buffer: do it here */
    }
    char why[320];
    enum tls_status st = tls_conn_input(c->t->tls, c->t->in, why, sizeof(why));
    return tls_result(c, st, was, why);
}

static void conn_free_unlinked(struct conn *c);
static void frame(struct conn *c);

/* In the loop: a handshake step came back from the thread. */
static void
handshake_done(struct hs_job *j)
{
    struct conn *c = j->owner;
    uint64_t work = (uint64_t)c->t->hs_work_us + j->work_us;
    c->t->hs_work_us = work > UINT32_MAX ? UINT32_MAX : (uint32_t)work;
    tls_conn_set_tx(c->t->tls, c->out);
    evbuffer_add_buffer(c->out, j->tx);
    evbuffer_free(j->tx);
    c->job = NULL;
    bool orphan = j->orphan;
    enum tls_status st = j->status;
    char why[sizeof(j->why)];
    memcpy(why, j->why, sizeof(why));
    free(j);
    if (orphan) { /* freed meanwhile: finish that */
        conn_free_unlinked(c);
        return;
    }
    if (c->closing) { /* timed out or shut down meanwhile: flush what there is */
        want_write(c);
        if (out_len(c) == 0) reap_soon(c);
        return;
    }
    bool framing = tls_result(c, st, false, why);
    if (c->closing) return;
    if (!c->paused) arm_event(c, conn_rev(c), "read event");
    if (framing) frame(c);
}

static void
lost(struct conn *c, const char *why)
{
    c->peer_gone = true;
    if (c->closing) { /* nothing more will be flushed */
        reap_soon(c);
        return;
    }
    conn_close(c);
    c->l->ops->on_lost(c, why, c->l->ud);
}

/* ---- large packets: read into a block of their own ----
 * A packet of BIG_PACKET bytes or more is not assembled in the input evbuffer
 * (chains, then a pullup copy): once its header is in, a block of its exact size is
 * allocated and the rest is read straight into it. The owner may keep the block
 * (conn_take_packet): a large PUBLISH becomes a message without copying its payload. */
#define BIG_PACKET (32 * 1024)
#define BIG_BURST  (256 * 1024) /* bytes read into it per wake-up */

struct big_packet {
    size_t len, have;
    uint8_t data[];
};

/* Start reading a packet of `total` bytes into its own block; false (the evbuffer
 * path goes on) when there is no memory for it. */
static bool
big_start(struct conn *c, struct evbuffer *in, size_t total)
{
    struct big_packet *b = malloc(sizeof(*b) + total);
    if (!b) return false;
    b->len = total;
    b->have = (size_t)evbuffer_remove(in, b->data, evbuffer_get_length(in));
    c->big = b;
    return true;
}

/* big_start() for bytes in flat memory (frame_flat). */
static bool
big_start_flat(struct conn *c, const uint8_t *p, size_t have, size_t total)
{
    struct big_packet *b = malloc(sizeof(*b) + total);
    if (!b) return false;
    b->len = total;
    b->have = have;
    memcpy(b->data, p, have);
    c->big = b;
    return true;
}

/* The whole packet is in: hand it over; the block is freed unless taken. */
static void
big_deliver(struct conn *c)
{
    struct big_packet *b = c->big;
    c->big = NULL;
    uint8_t tf;
    uint32_t rem;
    size_t hl;
    if (mqtt_frame_header(b->data, b->len < 5 ? b->len : 5, &tf, &rem, &hl) <= 0) {
        free(b); /* cannot happen: the header was parsed to start it */
        return;
    }
    c->bytes_in += b->len;
    struct listener *l = c->l;
    l->taking = b;
    l->taking_for = c;
    l->ops->on_packet(c, tf, b->data + hl, rem, l->ud);
    free(l->taking); /* not taken */
    l->taking = NULL;
    l->taking_for = NULL;
}

void *
conn_take_packet(struct conn *c)
{
    struct listener *l = c->l;
    if (l->taking_for != c) return NULL;
    void *b = l->taking;
    l->taking = NULL;
    return b;
}

/* After a large packet's reads (got bytes; n: the last recv's result): hand it over
 * once whole, else see whether the peer closed or the socket failed. */
static void
big_read_end(struct conn *c, size_t got, ssize_t n)
{
    if (got) c->last_rx_ms = lq_now_ms();
    if (c->big->have == c->big->len) {
        big_deliver(c); /* more packets may follow: the next wake-up frames them */
        return;
    }
    if (n == 0) {
        lost(c, "connection closed by peer");
    } else if (n < 0) {
        int e = EVUTIL_SOCKET_ERROR();
        if (e != EAGAIN && e != EWOULDBLOCK && e != EINTR)
            lost(c, evutil_socket_error_to_string(e));
    }
}

static void
big_read(struct conn *c, evutil_socket_t fd)
{
    struct big_packet *b = c->big;
    size_t got = 0;
    ssize_t n = 0;
    while (b->have < b->len && got < BIG_BURST) {
        size_t want = b->len - b->have;
        if (want > BIG_BURST - got) want = BIG_BURST - got;
        n = recv(fd, b->data + b->have, want, 0);
        if (n <= 0) break;
        b->have += (size_t)n;
        got += (size_t)n;
    }
    big_read_end(c, got, n);
}

static void
frame_tail(struct conn *c)
{
    if (c->peer_closed && !c->closing) lost(c, "connection closed by peer");
    if (!c->t && c->in && evbuffer_get_length(c->in) == 0) buf_put(c->l, &c->in);
    if (c->ws && c->ws->in && evbuffer_get_length(c->ws->in) == 0) buf_put(c->l, &c->ws->in);
    if (c->t && !c->closing) { /* TLS buffers stay: let them hold no memory while idle */
        buf_trim(c->in);
        buf_trim(c->t->in);
    }
}

/* Stream mode: the owner takes what it can of p; returns how much it took. */
static size_t
stream_feed(struct conn *c, const uint8_t *p, size_t len)
{
    size_t off = 0;
    while (off < len && !c->closing && !c->paused && !c->ws) { /* ws: upgraded meanwhile */
        size_t took = c->l->ops->on_bytes(c, p + off, len - off, c->l->ud);
        if (!took) break;
        off += took;
        c->bytes_in += took;
    }
    if (len - off > c->max_packet && !c->closing && !c->ws)
        c->l->ops->on_oversize(c, (uint32_t)(len - off > UINT32_MAX ? UINT32_MAX : len - off),
                               c->l->ud);
    return off;
}

/* Hand every whole packet buffered to the owner (until paused or closing). */
static void
frame(struct conn *c)
{
    if (c->t && !tls_read(c)) return;
    if (c->l->ops->on_bytes && !c->ws) { /* a pulled-up chain has room to grow in: amortised */
        struct evbuffer *in = inbuf(c);
        size_t avail = in ? evbuffer_get_length(in) : 0;
        if (avail && !c->closing && !c->paused)
            evbuffer_drain(in, stream_feed(c, evbuffer_pullup(in, -1), avail));
        if (!c->ws) { /* else it became a WebSocket: what follows the upgrade is frames */
            frame_tail(c);
            return;
        }
    }
    if (c->ws && !ws_read(c)) {
        frame_tail(c);
        return;
    }
    struct evbuffer *in = inbuf(c);
    while (in && !c->closing && !c->paused) {
        size_t avail = evbuffer_get_length(in);
        if (avail < 2) break;
        uint8_t hdr[5];
        size_t n = avail < sizeof(hdr) ? avail : sizeof(hdr);
        evbuffer_copyout(in, hdr, n);
        uint8_t tf;
        uint32_t rem;
        size_t hl;
        int r = mqtt_frame_header(hdr, n, &tf, &rem, &hl);
        if (r == 0) break; /* header incomplete */
        if (r < 0) {
            c->l->ops->on_malformed(c, c->l->ud);
            break;
        }
        size_t total = hl + rem;
        if (total > c->max_packet) { /* refuse before buffering it all */
            c->l->ops->on_oversize(c, (uint32_t)total, c->l->ud);
            break;
        }
        if (avail < total) {
            if (total >= BIG_PACKET && !c->t && !c->ws) big_start(c, in, total);
            break;
        }
        const uint8_t *p = evbuffer_pullup(in, (ssize_t)total);
        c->bytes_in += total;
        c->l->ops->on_packet(c, tf, p + hl, rem, c->l->ud);
        evbuffer_drain(in, total);
    }
    frame_tail(c);
}

/* frame() for bytes read into flat memory (plain TCP): packets go to the owner from
 * where they lie, without an evbuffer; what is left (a packet still coming, or all
 * that follows a pause) goes to c->in. A bad header is left there for frame() to
 * report: the owner may look at the packet (conn_peek). */
static void
frame_flat(struct conn *c, const uint8_t *p, size_t len)
{
    bool bad = false, was_ws = c->ws != NULL;
    bool stream = c->l->ops->on_bytes != NULL && !was_ws;
    size_t off = stream ? stream_feed(c, p, len) : 0;
    while (!stream && !c->closing && !c->paused && len - off >= 2) {
        uint8_t tf;
        uint32_t rem;
        size_t hl, avail = len - off;
        int r = mqtt_frame_header(p + off, avail < 5 ? avail : 5, &tf, &rem, &hl);
        if (r == 0) break;
        size_t total = hl + rem;
        if (r < 0 || total > c->max_packet) {
            bad = true;
            break;
        }
        if (avail < total) {
            if (total >= BIG_PACKET && big_start_flat(c, p + off, avail, total)) off = len;
            break;
        }
        c->bytes_in += total;
        c->l->ops->on_packet(c, tf, p + off + hl, rem, c->l->ud);
        off += total;
    }
    if (off < len && !c->closing) { /* a WebSocket's: MQTT bytes, apart from its frames */
        struct evbuffer **rest = was_ws ? &c->ws->in : &c->in;
        if (!*rest) *rest = buf_get(c->l);
        if (!*rest || evbuffer_add(*rest, p + off, len - off) < 0) {
            lost(c, "out of memory for input");
            return;
        }
    }
    if (bad || (c->ws && !was_ws)) /* an HTTP request became a WebSocket: frames follow */
        frame(c);
    else
        frame_tail(c);
}

/* ---- lingering close ----
 * Closing a socket whose input holds unread bytes makes the kernel send a reset,
 * and the reset discards what the peer had not read yet: the DISCONNECT or CONNACK
 * reason code of a client that was still sending. So once the output is flushed,
 * writing is shut down (the peer reads it all, then end of stream) and what the peer
 * still sends is read and discarded until it closes, for at most LINGER_MS and
 * LINGER_BYTES: a peer that goes on sending is cut then. Web servers do the same. */
static void
linger(struct conn *c)
{
    if (c->lingering) return;
    if (c->peer_gone || c->job || shutdown(c->fd, SHUT_WR) < 0) {
        reap_soon(c);
        return;
    }
    c->lingering = true;
    c->linger_left = LINGER_BYTES;
    c->l->nlinger++;
    wheel_put(c, lq_now_ms() + LINGER_MS);
    if (event_add(conn_rev(c), NULL) < 0) reap_soon(c); /* on_readable discards from now on */
}

static void
linger_read(struct conn *c, evutil_socket_t fd)
{
    char sink[4096];
    for (;;) {
        size_t want = c->linger_left < sizeof(sink) ? c->linger_left : sizeof(sink);
        ssize_t n = recv(fd, sink, want, 0);
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) return;
        if (n <= 0) break; /* closed by the peer, or reset */
        c->linger_left -= (uint32_t)n;
        if (!c->linger_left) break; /* sent too much: cut */
    }
    reap_soon(c);
}

/* At most READ_BURST bytes per wake-up (libevent reads 4 KiB per call): a publisher
 * that floods cannot hold the loop, and subscribers get their turn to drain. 64 KiB
 * bursts measured worse: more QoS 0 overflow at slow subscribers. */
#define READ_BURST (16 * 1024)
#define FLAT_READ  (64 * 1024) /* what is left of the last read, then READ_BURST more */

/* After a read of n (its result) that brought got bytes into the input evbuffer. */
static void
read_end(struct conn *c, int n, size_t got)
{
    if (got) c->last_rx_ms = lq_now_ms();
    if (n == 0) { /* end of stream; what came before it still counts */
        frame(c);
        lost(c, "connection closed by peer");
        return;
    }
    if (n < 0) {
        int e = EVUTIL_SOCKET_ERROR();
        if (e != EAGAIN && e != EWOULDBLOCK && e != EINTR) {
            frame(c);
            lost(c, evutil_socket_error_to_string(e));
            return;
        }
    }
    frame(c);
}

/* TLS, WebSockets: ciphertext or frames into c->in, READ_BURST at most per wake-up;
 * frame() decrypts and deframes. */
static void
read_buffered(struct conn *c, evutil_socket_t fd)
{
    if (!c->in && !(c->in = buf_get(c->l))) {
        lost(c, "out of memory for input");
        return;
    }
    size_t got = 0;
    int n = 0;
    while (got < READ_BURST && (n = evbuffer_read(c->in, fd, READ_BURST)) > 0) got += (size_t)n;
    read_end(c, n, got);
}

/* A plain WebSocket: TCP's flat read with the frames decoded in place. Into flat go
 * the MQTT bytes left from the last read (a packet still coming), the frame bytes
 * left (a frame still coming), then what recv brings; the frames' payload moves
 * down over their headers, right after the MQTT bytes, and the packets are framed
 * where they lie. Large leftovers (a pause) take the evbuffer path. */
static void
read_ws_flat(struct conn *c, evutil_socket_t fd, uint8_t *flat)
{
    struct conn_ws *ws = c->ws;
    size_t mqtt = ws->in ? evbuffer_get_length(ws->in) : 0;
    size_t raw = c->in ? evbuffer_get_length(c->in) : 0;
    if (mqtt + raw > FLAT_READ - READ_BURST) {
        read_buffered(c, fd);
        return;
    }
    if (mqtt) evbuffer_remove(ws->in, flat, mqtt);
    if (raw) evbuffer_remove(c->in, flat + mqtt, raw);
    ssize_t n = recv(fd, flat + mqtt + raw, READ_BURST, 0);
    size_t got = n > 0 ? (size_t)n : 0;
    if (got) c->last_rx_ms = lq_now_ms();
    int err = n < 0 ? EVUTIL_SOCKET_ERROR() : 0;
    size_t produced = 0, used = ws_deframe(c, flat + mqtt, flat + mqtt, raw + got, &produced);
    if (c->closing) return;
    if (used < raw + got) { /* a frame not whole: its bytes wait in c->in */
        if (!c->in) c->in = buf_get(c->l);
        if (!c->in || evbuffer_add(c->in, flat + mqtt + used, raw + got - used) < 0) {
            lost(c, "out of memory for input");
            return;
        }
    }
    size_t at = 0, have = mqtt + produced; /* mqtt is 0 while a large packet comes */
    if (c->big) {                          /* straight into its block, as big_read does for TCP */
        struct big_packet *b = c->big;
        at = b->len - b->have < have ? b->len - b->have : have;
        memcpy(b->data + b->have, flat, at);
        b->have += at;
        if (b->have == b->len) big_deliver(c);
    }
    if (!c->closing) frame_flat(c, flat + at, have - at);
    if (n == 0) lost(c, "connection closed by peer");
    if (n < 0 && err != EAGAIN && err != EWOULDBLOCK && err != EINTR)
        lost(c, evutil_socket_error_to_string(err));
}

/* big_read() for a plain WebSocket: the frames are read into the packet's block and
 * decoded there, their payload moved down over their headers. A frame header cut
 * by the end of a read goes to c->in; read_ws_flat then takes it from there. */
static void
ws_big_read(struct conn *c, evutil_socket_t fd)
{
    struct big_packet *b = c->big;
    size_t got = 0;
    ssize_t n = 0;
    while (b->have < b->len && got < BIG_BURST) {
        size_t want = b->len - b->have; /* payload is never more than the bytes read */
        if (want > BIG_BURST - got) want = BIG_BURST - got;
        uint8_t *at = b->data + b->have;
        n = recv(fd, at, want, 0);
        if (n <= 0) break;
        got += (size_t)n;
        size_t produced, used = ws_deframe(c, at, at, (size_t)n, &produced);
        if (c->closing) return;
        b->have += produced;
        if (used < (size_t)n) {
            if (!c->in) c->in = buf_get(c->l);
            if (!c->in || evbuffer_add(c->in, at + used, (size_t)n - used) < 0) {
                lost(c, "out of memory for input");
                return;
            }
            break;
        }
    }
    big_read_end(c, got, n);
}

/* A peer that sends what is answered (PINGREQ, WebSocket pings, QoS 1 PUBLISH) and
 * reads none of the answers would grow its output as fast as it sends: past
 * OUT_READ_LIMIT queued, its input is not read until the output drains (write_out). */
static bool
reading_held(struct conn *c)
{
    if (conn_pending(c) < OUT_READ_LIMIT) return false;
    event_del(conn_rev(c));
    return true;
}

/* The output drained: read again what reading_held stopped (unless paused). */
static void
reading_resumes(struct conn *c)
{
    if (c->paused || c->closing || c->job || c->connecting) return;
    if (!event_pending(conn_rev(c), EV_READ, NULL)) arm_event(c, conn_rev(c), "read event");
}

static void
on_readable(evutil_socket_t fd, short what, void *arg)
{
    (void)what;
    struct conn *c = arg;
    if (c->job) return; /* cannot happen: reading stops while the thread has it */
    if (c->lingering) {
        linger_read(c, fd);
        return;
    }
    if (reading_held(c)) return;
    static uint8_t flat[FLAT_READ];
    if (c->ws && c->ws->open && !c->t) { /* a large packet too: its frames come first */
        if (c->big && !(c->in && evbuffer_get_length(c->in)))
            ws_big_read(c, fd);
        else
            read_ws_flat(c, fd, flat);
        return;
    }
    if (c->big) {
        big_read(c, fd);
        return;
    }
    if (c->t || c->ws) {
        read_buffered(c, fd);
        return;
    }
    /* One recv per wake-up, into flat memory after what is left of the last one (a
     * packet still coming): a short read means the socket is drained, and the packets
     * are framed where they lie. Only a large remainder (a pause with much unread)
     * takes the evbuffer path. */
    size_t have = c->in ? evbuffer_get_length(c->in) : 0;
    if (have > FLAT_READ - READ_BURST) {
        int n = evbuffer_read(c->in, fd, READ_BURST);
        read_end(c, n, n > 0 ? (size_t)n : 0);
        return;
    }
    if (have) evbuffer_remove(c->in, flat, have);
    ssize_t n = recv(fd, flat + have, READ_BURST, 0);
    size_t got = n > 0 ? (size_t)n : 0;
    if (got) c->last_rx_ms = lq_now_ms();
    int err = n < 0 ? EVUTIL_SOCKET_ERROR() : 0;
    frame_flat(c, flat, have + got);
    if (n == 0) lost(c, "connection closed by peer");
    if (n < 0 && err != EAGAIN && err != EWOULDBLOCK && err != EINTR)
        lost(c, evutil_socket_error_to_string(err));
}

/* Write what is queued; what the socket does not take waits for EV_WRITE. */
static void
write_out(struct conn *c)
{
    if (c->ws && !c->t) ws_wrap(c);
    if (c->out && evbuffer_get_length(c->out) && evbuffer_write(c->out, c->fd) < 0) {
        int e = EVUTIL_SOCKET_ERROR();
        if (e != EAGAIN && e != EWOULDBLOCK && e != EINTR) {
            if (c->wev) write_done(c);
            lost(c, evutil_socket_error_to_string(e));
            return;
        }
    }
    size_t left = out_len(c);
    if (left == 0) {
        if (c->wev) write_done(c);
        if (!c->t && c->out) buf_put(c->l, &c->out);
    } else {
        wait_writable(c);
    }
    if (c->closing) {
        if (left == 0 && !gated(c)) linger(c);
        return;
    }
    if (left <= OUT_LOW) {
        reading_resumes(c);
        c->l->ops->on_drain(c, c->l->ud);
    }
}

static void
on_writable(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    write_out(arg);
}

/* The conns listed when it starts are written; those listed meanwhile (on_drain
 * produced more) wait for the next loop iteration, so reading is not starved. */
static void
write_listed_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct listener *l = arg;
    uint32_t n = l->nflush;
    for (uint32_t i = 0; i < n; i++) {
        struct conn *c = l->flush[i];
        if (!c) continue;
        c->flush_slot = 0;
        if (c->broken && !c->closing) {
            lost(c, broken_why[c->broken]);
            if (!out_len(c)) continue; /* already on the reap list */
        }
        write_out(c);
    }
    uint32_t later = 0;
    for (uint32_t i = n; i < l->nflush; i++) {
        struct conn *c = l->flush[i];
        if (!c) continue;
        l->flush[later++] = c;
        c->flush_slot = later;
    }
    l->nflush = later;
    if (later) {
        struct timeval now = {0, 0};
        if (event_add(l->flush_ev, &now) != 0)
            lq_log(LQ_LOG_ERR, "cannot arm the output flush: %u connections wait", later);
    }
}

/* Release what conn_new allocated (the conn is not, or no longer, in l->conns). */
static void
conn_free_unlinked(struct conn *c)
{
    handshake_over(c);
    if (c->flush_slot) c->l->flush[c->flush_slot - 1] = NULL;
    c->flush_slot = 0;
    if (c->job) { /* the handshake thread has its TLS state: handshake_done frees it */
        hs_worker_orphan(c->job);
        if (on_wheel(c)) c->l->nwheel--;
        unlink_timed(c);
        if (event_initialized(conn_rev(c))) event_del(conn_rev(c));
        return;
    }
    if (on_wheel(c)) c->l->nwheel--;
    unlink_timed(c);
    gate_free(c);
    if (c->lingering) c->l->nlinger--;
    ws_free_state(c->ws);
    if (c->t) {
        tls_conn_free(c->t->tls);
        if (c->t->in) evbuffer_free(c->t->in);
        if (c->t->out) evbuffer_free(c->t->out);
        if (c->t->flush_ev) event_free(c->t->flush_ev);
    }
    if (event_initialized(conn_rev(c))) event_del(conn_rev(c));
    if (c->wev) event_free(c->wev);
    if (c->in) evbuffer_free(c->in);
    if (c->out) evbuffer_free(c->out);
    evutil_closesocket(c->fd);
    free(c->big);
    free(c);
}

static void
peer_name(const struct sockaddr *sa, char *out, size_t outlen)
{
    char ip[INET6_ADDRSTRLEN] = "?";
    if (sa->sa_family == AF_INET) {
        const struct sockaddr_in *in4 = (const struct sockaddr_in *)(const void *)sa;
        inet_ntop(AF_INET, &in4->sin_addr, ip, sizeof(ip));
        snprintf(out, outlen, "%s:%u", ip, ntohs(in4->sin_port));
    } else if (sa->sa_family == AF_INET6) {
        const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)(const void *)sa;
        inet_ntop(AF_INET6, &in6->sin6_addr, ip, sizeof(ip));
        snprintf(out, outlen, "[%s]:%u", ip, ntohs(in6->sin6_port));
    } else {
        snprintf(out, outlen, "unix");
    }
}

/* A conn on fd, not yet in l->conns; with tls it speaks TLS with it. NULL (fd closed)
 * when something cannot be set up. */
static struct conn *
conn_make(struct listener *l, evutil_socket_t fd, const struct sockaddr *sa, struct tls_ctx *tls,
          bool dialed)
{
    char peer[INET6_ADDRSTRLEN + 16];
    peer_name(sa, peer, sizeof(peer));
    /* one allocation: the conn, its read event, what TLS needs, its peer's name */
    size_t peer_len = strlen(peer), tls_size = tls ? ALIGN8(sizeof(struct conn_tls)) : 0;
    struct conn *c = lq_xcalloc(1, CONN_SIZE + rev_size() + tls_size + peer_len + 1);
    c->l = l;
    c->fd = fd;
    c->max_packet = UINT32_MAX;
    c->last_rx_ms = lq_now_ms();
    c->dialed = c->connecting = dialed;
    if (tls) c->t = (struct conn_tls *)(void *)((char *)c + CONN_SIZE + rev_size());
    memcpy((char *)c + CONN_SIZE + rev_size() + tls_size, peer, peer_len + 1);
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one)); /* latency over batching */
    evutil_make_socket_nonblocking(fd);
    if (event_assign(conn_rev(c), l->base, fd, EV_READ | EV_PERSIST, on_readable, c) < 0) {
        lq_log(LQ_LOG_ERR, "%s: cannot set up connection", conn_peer(c));
        conn_free_unlinked(c);
        return NULL;
    }
    if (tls) { /* the record layer reads and writes in and out: they stay */
        c->in = evbuffer_new();
        c->out = evbuffer_new();
        c->t->in = evbuffer_new();
        c->t->out = evbuffer_new();
        c->t->flush_ev = event_new(l->base, -1, 0, flush_cb, c);
        c->t->tls = c->in && c->out && c->t->in && c->t->out && c->t->flush_ev
                        ? tls_conn_new(tls, c->in, c->out)
                        : NULL;
        if (!c->t->tls) {
            lq_log(LQ_LOG_ERR, "%s: cannot set up TLS", conn_peer(c));
            conn_free_unlinked(c);
            return NULL;
        }
        c->t->hs_deadline_ms = c->last_rx_ms + tls_ctx_handshake_timeout_ms(tls);
        if (dialed) { /* a client's handshake: not the threads' work, not admission's */
            c->t->spoke = true;
            wheel_put(c, c->t->hs_deadline_ms);
        } else {
            c->t->quiet_ms = c->last_rx_ms + QUIET_MS;
            wheel_put(c, c->t->quiet_ms < c->t->hs_deadline_ms ? c->t->quiet_ms
                                                               : c->t->hs_deadline_ms);
            c->t->hs_counted = true; /* listener_admission after the accept */
            l->nhandshaking++;
        }
    }
    if (listener_ws_at_accept(l) && !ws_conn_start(c)) {
        lq_log(LQ_LOG_ERR, "%s: cannot set up WebSocket", conn_peer(c));
        conn_free_unlinked(c);
        return NULL;
    }
    if (!dialed && event_add(conn_rev(c), NULL) != 0) { /* dialed: once connected */
        lq_log(LQ_LOG_ERR, "%s: cannot arm its read event: closing", conn_peer(c));
        conn_free_unlinked(c);
        return NULL;
    }
    return c;
}

static void
conn_link(struct listener *l, struct conn *c)
{
    c->next = l->conns;
    if (l->conns) l->conns->prev = c;
    l->conns = c;
    l->nconns++;
}

struct conn *
conn_new(struct listener *l, evutil_socket_t fd, const struct sockaddr *sa, int salen)
{
    (void)salen;
    struct conn *c = conn_make(l, fd, sa, l->tls, false);
    if (c) conn_link(l, c);
    return c;
}

/* ---- dialing out (bridges) ----
 * A dialed conn is an accepted one that starts earlier: while it connects, its write
 * event (c->wev, so want_write lists it nowhere) waits for the connect to finish, its
 * read event is not armed, and output piles up in c->out (or, with TLS, as plaintext
 * in t->out, which tls_flush encrypts once the handshake is over). */
static void
on_connected(evutil_socket_t fd, short what, void *arg)
{
    (void)what;
    struct conn *c = arg;
    int err = (int)c->dial_error;
    socklen_t len = sizeof(err);
    if (!err && getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0) err = errno;
    c->dial_error = 0;
    write_done(c);          /* the connect event: a spare write event now */
    if (c->closing) return; /* closed while connecting: on the reap list */
    if (err) {
        char why[128];
        snprintf(why, sizeof(why), "connect: %s", evutil_socket_error_to_string(err));
        lost(c, why); /* still connecting: conn_close drops the output */
        return;
    }
    c->connecting = false;
    if (!c->paused) arm_event(c, conn_rev(c), "read event");
    if (c->broken && !c->flush_slot) list_for_flush(c); /* close_soon left it to us */
    if (c->t)
        frame(c); /* the ClientHello */
    else
        want_write(c);
}

struct conn *
conn_dial(struct listener *d, const struct sockaddr *sa, int salen, struct tls_ctx *tls,
          const char *host)
{
    evutil_socket_t fd = socket(sa->sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) return NULL;
    int err = connect(fd, sa, (socklen_t)salen) == 0 ? 0 : errno;
    if (err == EINPROGRESS || err == EINTR) err = 0; /* EINTR: it goes on all the same */
    struct conn *c = conn_make(d, fd, sa, tls, true);
    if (!c) {
        errno = ENOMEM;
        return NULL;
    }
    if (tls) tls_conn_set_hostname(c->t->tls, host);
    c->wev = event_new(d->base, fd, EV_WRITE, on_connected, c);
    if (c->wev && err) { /* refused at once: said from the loop, as any other failure */
        c->dial_error = (uint32_t)err;
        event_active(c->wev, EV_WRITE, 0);
    } else if (!c->wev || event_add(c->wev, NULL) != 0) {
        conn_free_unlinked(c);
        errno = ENOMEM;
        return NULL;
    }
    conn_link(d, c);
    return c;
}

bool
conn_is_established(const struct conn *c)
{
    return !c->connecting && !handshaking(c);
}

void
conn_free(struct conn *c)
{
    struct listener *l = c->l;
    if (l->ops->on_free) l->ops->on_free(c, l->ud);
    if (c->prev)
        c->prev->next = c->next;
    else
        l->conns = c->next;
    if (c->next) c->next->prev = c->prev;
    l->nconns--;
    conn_free_unlinked(c);
}

void
conn_set_owner(struct conn *c, void *owner)
{
    c->owner = owner;
}

void
conn_set_aux(struct conn *c, void *aux)
{
    c->aux = aux;
}

void *
conn_aux(const struct conn *c)
{
    return c->aux;
}

struct listener *
conn_listener(const struct conn *c)
{
    return c->l;
}

void *
conn_owner(const struct conn *c)
{
    return c->owner;
}

const char *
conn_peer(const struct conn *c)
{
    return (const char *)c + CONN_SIZE + rev_size() + (c->t ? ALIGN8(sizeof(struct conn_tls)) : 0);
}

void
conn_set_max_packet(struct conn *c, uint32_t max)
{
    c->max_packet = max ? max : UINT32_MAX;
}

/* When to look at c next: its deadline, else its keep-alive counted from now. */
static void
arm(struct conn *c)
{
    if (c->closing) return;
    if (handshaking(c)) { /* the handshake deadline comes first; re-armed after it */
        if (c->dialed) wheel_put(c, dial_due(c)); /* a dial's deadline runs through it */
        return;
    }
    uint64_t due = c->deadline_ms    ? c->deadline_ms
                   : c->keepalive_ms ? lq_now_ms() + c->keepalive_ms
                                     : 0;
    if (c->t && c->t->settle_ms && (!due || c->t->settle_ms < due)) due = c->t->settle_ms;
    wheel_put(c, due);
}

void
conn_set_keepalive(struct conn *c, uint64_t ms)
{
    c->keepalive_ms = ms;
    arm(c);
}

void
conn_set_deadline(struct conn *c, uint32_t ms)
{
    if (c->t && !c->dialed) c->t->deadline_len_ms = ms; /* dialed: from now, handshake or not */
    c->deadline_ms = ms ? lq_now_ms() + ms : 0;
    arm(c);
}

size_t
conn_peek(const struct conn *c, void *out, size_t n)
{
    struct evbuffer *in = inbuf(c);
    ev_ssize_t got = in ? evbuffer_copyout(in, out, n) : 0;
    return got > 0 ? (size_t)got : 0;
}

void
conn_write(struct conn *c, const void *p, size_t n)
{
    if ((c->closing && !n) || c->broken) return;
    struct evbuffer *b = outbuf(c);
    if (!b || evbuffer_add(b, p, n) != 0) {
        out_failed(c, n);
        return;
    }
    c->bytes_out += n;
    queued(c);
    want_write(c);
}

void
conn_write_now(struct conn *c, const void *p, size_t n)
{
    if (c->t || c->ws || c->closing || c->connecting || out_len(c) || gated(c)) {
        conn_write(c, p, n);
        return;
    }
    ssize_t w = send(c->fd, p, n, MSG_NOSIGNAL | MSG_DONTWAIT);
    if (w < 0) w = 0; /* a real error shows on the next read */
    c->bytes_out += (size_t)w;
    if ((size_t)w < n) conn_write(c, (const uint8_t *)p + w, n - (size_t)w);
}

uint8_t *
conn_reserve(struct conn *c, size_t n)
{
    struct evbuffer *b = c->broken ? NULL : outbuf(c);
    if (!b || evbuffer_reserve_space(b, (ssize_t)n, &c->l->resv, 1) != 1) {
        out_failed(c, n);
        return NULL;
    }
    return c->l->resv.iov_base;
}

void
conn_commit(struct conn *c, size_t n)
{
    c->l->resv.iov_len = n;
    evbuffer_commit_space(outbuf(c), &c->l->resv, 1);
    c->bytes_out += n;
    queued(c);
    want_write(c);
}

struct ref_release {
    void (*fn)(void *);
    void *arg;
};

static void
release_cb(const void *data, size_t len, void *arg)
{
    (void)data;
    (void)len;
    struct ref_release *r = arg;
    r->fn(r->arg);
    free(r);
}

void
conn_write_ref(struct conn *c, const void *p, size_t n, void (*release)(void *arg), void *arg)
{
    struct ref_release *r = lq_xmalloc(sizeof(*r));
    r->fn = release;
    r->arg = arg;
    struct evbuffer *b = c->broken ? NULL : outbuf(c);
    if (!b || evbuffer_add_reference(b, p, n, release_cb, r) != 0) {
        release(arg); /* libevent calls no cleanup when it fails */
        free(r);
        if (!c->broken) out_failed(c, n);
        return;
    }
    c->bytes_out += n;
    queued(c);
    want_write(c);
}

size_t
conn_pending(const struct conn *c)
{
    size_t n = out_len(c) + held_len(c) + ws_pending(c);
    return c->t ? n + evbuffer_get_length(c->t->out) : n;
}

bool
conn_is_writable(const struct conn *c)
{
    return !c->closing && conn_pending(c) < OUT_HIGH;
}

void
conn_pause(struct conn *c)
{
    if (c->paused) return;
    c->paused = true;
    event_del(conn_rev(c));
}

void
conn_resume(struct conn *c)
{
    if (!c->paused || c->closing) return;
    c->paused = false;
    if (c->job || c->connecting) return; /* handshake_done, on_connected resume reading */
    arm_event(c, conn_rev(c), "read event");
    /* packets already buffered would wait for new bytes: run the reader soon */
    if ((c->in && evbuffer_get_length(c->in)) || (c->t && evbuffer_get_length(c->t->in)) ||
        (c->ws && c->ws->in && evbuffer_get_length(c->ws->in)))
        event_active(conn_rev(c), EV_READ, 0);
}

bool
conn_is_paused(const struct conn *c)
{
    return c->paused;
}

void
conn_close(struct conn *c)
{
    if (c->closing) return; /* already on its way out? */
    c->closing = true;
    event_del(conn_rev(c));
    if (c->connecting) { /* never connected: nothing to flush, nobody to linger for */
        c->peer_gone = true;
        if (c->out) evbuffer_drain(c->out, evbuffer_get_length(c->out));
        gate_free(c);
    }
    /* TLS: held output cannot follow the close_notify; it was not acknowledged, so the
     * client sends again after reconnecting */
    if ((c->t || c->ws) && c->gate) gate_free(c); /* ws: nor the close frame */
    if (c->ws && !c->connecting) ws_closing(c);   /* what is queued, then a close frame */
    if (c->ws && !c->t) want_write(c);
    if (c->t && !c->job) { /* what is queued leaves now, then the close_notify */
        tls_flush(c);
        tls_conn_shutdown(c->t->tls);
        want_write(c);
    }
    if (out_len(c) == 0 && !gated(c)) {
        linger(c);
        return;
    }
    wheel_put(c, lq_now_ms() + CLOSE_GRACE_MS);
}

void
conn_close_by_peer(struct conn *c)
{
    c->peer_gone = true; /* a connection storm pays no shutdown and wait per client */
    conn_close(c);
}

bool
conn_is_closing(const struct conn *c)
{
    return c->closing;
}

bool
conn_is_tls(const struct conn *c)
{
    return c->t != NULL;
}

const struct tls_identity *
conn_tls_identity(const struct conn *c)
{
    return c->t ? tls_conn_identity(c->t->tls) : NULL;
}

const char *
conn_tls_username(const struct conn *c)
{
    return c->t ? tls_conn_username(c->t->tls) : NULL;
}

void
conn_bytes(const struct conn *c, uint64_t *in, uint64_t *out)
{
    *in = c->bytes_in;
    *out = c->bytes_out;
}
