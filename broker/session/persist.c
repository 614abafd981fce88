/* SPDX-License-Identifier: MIT
 *
 * persist: the session layer's durable state, as records in the journal (store.h),
 * when `persistence true`. What is written: retained messages, sessions that outlive
 * their connection (expiry > 0) with their subscriptions, will, the QoS 2 packet ids
 * they sent us and await PUBREL for, and their queued and in-flight QoS 1/2 messages.
 * QoS 0 and clean sessions are never written. The hooks' key-value store (kv.h) is
 * written here too, one record per change. A message body is written once
 * (MSG_PUT) and referenced by id from queue entries and retained topics.
 *
 * The promise: an acknowledgement (PUBACK, PUBREC, PUBCOMP, SUBACK, UNSUBACK, and
 * CONNACK of a persistent session) leaves only once the records it speaks for are on
 * disk: the packet handler calls persist_gate() before writing it, and the
 * connection holds that output until the journal says durable (conn_gate). A QoS 2
 * PUBLISH or PUBREL to a subscriber goes out only after its packet id and state are
 * durable, so that a restart resumes the exchange with the same id.
 *
 * Records are idempotent puts and deletes, so the journal can be compacted by a
 * snapshot written from live state in slices while it changes, and replayed on top
 * of it: whatever changed during the snapshot is in the journal after it.
 * Not here: files, fsync, the writer thread (store/). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>

#include "hooks.h"
#include "kv.h"
#include "retain.h"
#include "sbuf.h"
#include "session_int.h"
#include "store.h"

enum rec_type {
    R_MSG_PUT = 1,     /* mid, qos, retain, expiry, created, topic, props, payload */
    R_RETAIN_PUT = 2,  /* topic, mid */
    R_RETAIN_DEL = 3,  /* topic */
    R_SESS_PUT = 4,    /* sid, client id, expiry, version, offline since, username, will */
    R_SESS_DEL = 5,    /* sid: with its subscriptions, queue and packet ids */
    R_SUB_PUT = 6,     /* sid, filter, group, options */
    R_SUB_DEL = 7,     /* sid, filter, group */
    R_QE_PUT = 8,      /* sid, mid, qos, state, pid, flags, subscription ids */
    R_QE_DEL = 9,      /* sid, mid */
    R_IN_PUT = 10,     /* sid, pid: QoS 2 received, PUBREL awaited */
    R_IN_DEL = 11,     /* sid, pid */
    R_GROUP_END = 12,  /* the records flagged R_GROUPED before it are one change */
    R_GROUP_TORN = 13, /* they are not: a crash cut the change short (the next run says) */
    R_KV_PUT = 14,     /* key, value, expiry (wall ms, 0: none) */
    R_KV_DEL = 15,     /* key */
};
/* A change of several records that must not be half replayed (a QoS 2 PUBLISH: its
 * queue entries and its packet id) flags them; replay applies them at R_GROUP_END
 * only. A crash can cut a group short; the next run starts with R_GROUP_TORN, so the
 * torn group stays out of every later replay too: completed by that run's records, it
 * would hold ids (message, packet) the run handed out again. */
#define R_GROUPED 0x80

#define SLICE_MS        2             /* a snapshot slice holds the loop at most this */
#define SNAP_BACKLOG    (16u << 20)   /* the writer this far behind: the slices wait */
#define COMPACT_MIN     (64ull << 20) /* journal bytes that always call for a snapshot */
#define DEFAULT_BACKLOG (64u << 20)   /* appended, not durable: publishers are paused */

struct persist {
    struct store *st;
    struct broker *b;
    uint64_t next_mid, next_sid;
    /* journal generation: a message whose MSG_PUT is older than the last compaction's
     * start is written again before a new reference; jgen + 1 marks the messages the
     * running snapshot has written */
    uint32_t jgen;
    struct rec_buf rb;
    bool replaying;
    unsigned group_depth;   /* persist_group_begin .. end */
    uint64_t group_records; /* appended in the open group */
    /* snapshot in slices */
    bool snap_retained_done;
    size_t snap_bucket;
    bool snap_kv_done;
    struct sbuf snap_kv_after; /* the last key written */
    struct event *slice_ev, *tick_ev;
    double last_compaction;
    uint64_t records_at_compaction;
    /* publishers paused while the writer is behind (max_backlog) */
    struct session **paused;
    size_t npaused, cap_paused;
    bool failing; /* last seen store_failing(): logged on change */
    double recovery_seconds;
    uint64_t batches_last, batches_rate;
};

/* ---- encoding ---- */

static void
rec_str(struct rec_buf *r, const char *s, size_t n)
{
    rec_bytes(r, s, n);
}

static uint64_t
wall_ms(void)
{
    return (uint64_t)(lq_wall_time() * 1000.0);
}

typedef void (*emit_fn)(struct persist *p, uint8_t type);

static void
to_journal(struct persist *p, uint8_t type)
{
    if (p->group_depth) {
        type |= R_GROUPED;
        p->group_records++;
    }
    store_append(p->st, type, p->rb.p, p->rb.len);
}

static void
group_begin(struct persist *p)
{
    if (p->group_depth++ == 0) p->group_records = 0;
}

static void
group_end(struct persist *p)
{
    if (--p->group_depth || !p->group_records) return;
    store_append(p->st, R_GROUP_END, NULL, 0);
}

void
persist_group_begin(struct broker *b)
{
    struct persist *p = b->persist;
    if (p && !p->replaying) group_begin(p);
}

void
persist_group_end(struct broker *b)
{
    struct persist *p = b->persist;
    if (p && !p->replaying) group_end(p);
}

static void
to_snapshot(struct persist *p, uint8_t type)
{
    store_snapshot_add(p->st, type, p->rb.p, p->rb.len);
}

static struct rec_buf *
rec(struct persist *p)
{
    p->rb.len = 0;
    return &p->rb;
}

static void
emit_msg(struct persist *p, struct msg *m, emit_fn emit)
{
    struct rec_buf *r = rec(p);
    uint64_t now = lq_now_ms(), wall = wall_ms();
    rec_u64(r, m->store_id);
    rec_u8(r, m->qos);
    rec_u8(r, m->retain);
    rec_u8(r, m->has_expiry);
    /* deadlines as wall-clock times: a restart must not give a message more time */
    rec_u64(r, m->has_expiry ? wall + (m->expire_at_ms > now ? m->expire_at_ms - now : 0) : 0);
    rec_u64(r, wall - (now > m->created_ms ? now - m->created_ms : 0));
    rec_str(r, m->topic, m->topic_len);
    rec_bytes(r, m->props, m->props_len);
    rec_bytes(r, m->payload, m->payload_len);
    emit(p, R_MSG_PUT);
}

/* m's body is in the journal of this generation before anything refers to it. */
static void
journal_msg(struct persist *p, struct msg *m)
{
    if (m->store_id && (m->store_gen == p->jgen || m->store_gen == p->jgen + 1)) return;
    if (!m->store_id) m->store_id = ++p->next_mid;
    m->store_gen = p->jgen;
    emit_msg(p, m, to_journal);
}

static void
snapshot_msg(struct persist *p, struct msg *m)
{
    if (m->store_id && m->store_gen == p->jgen + 1) return; /* already in this snapshot */
    if (!m->store_id) m->store_id = ++p->next_mid;
    m->store_gen = p->jgen + 1;
    emit_msg(p, m, to_snapshot);
}

static void
emit_retain(struct persist *p, struct msg *m, emit_fn emit)
{
    struct rec_buf *r = rec(p);
    rec_str(r, m->topic, m->topic_len);
    rec_u64(r, m->store_id);
    emit(p, R_RETAIN_PUT);
}

static void
emit_session(struct persist *p, struct session *s, emit_fn emit)
{
    struct rec_buf *r = rec(p);
    rec_u64(r, s->store_id);
    rec_str(r, s->id, s->id_len);
    rec_u32(r, s->expiry);
    rec_u8(r, s->version);
    rec_u64(r, s->conn ? 0 : wall_ms()); /* offline since: 0 = online (now, on replay) */
    rec_str(r, s->username ? s->username : "", s->username ? strlen(s->username) : 0);
    struct will *w = s->will;
    rec_u8(r, w != NULL);
    if (w) {
        rec_u64(r, w->m->store_id);
        rec_u32(r, w->delay);
        rec_str(r, w->username ? w->username : "", w->username ? strlen(w->username) : 0);
    }
    emit(p, R_SESS_PUT);
}

static void
emit_sub(struct persist *p, const struct session *s, const struct ssub *x, emit_fn emit)
{
    struct rec_buf *r = rec(p);
    rec_u64(r, s->store_id);
    rec_str(r, x->filter, strlen(x->filter));
    rec_str(r, x->group ? x->group : "", x->group ? strlen(x->group) : 0);
    rec_u8(r, x->o.qos);
    rec_u8(r, (uint8_t)(x->o.no_local | x->o.retain_as_published << 1 | x->o.retain_handling << 2));
    rec_u32(r, x->o.sub_id);
    emit(p, R_SUB_PUT);
}

static void
emit_qentry(struct persist *p, const struct session *s, const struct qentry *e, emit_fn emit)
{
    struct rec_buf *r = rec(p);
    rec_u64(r, s->store_id);
    rec_u64(r, e->m->store_id);
    rec_u8(r, e->qos);
    /* sent: the packet id and state, for the resend with the same id [MQTT-4.4.0-1] */
    bool keep = e->state != Q_QUEUED;
    rec_u8(r, keep ? e->state : Q_QUEUED);
    rec_u16(r, keep ? e->pid : 0);
    rec_u8(r, (uint8_t)(e->retain | e->dup << 1));
    rec_u32(r, e->nsub);
    for (uint32_t i = 0; i < e->nsub; i++) rec_u32(r, e->sub_ids[i]);
    emit(p, R_QE_PUT);
}

static void
emit_ids(struct persist *p, uint8_t type, uint64_t a, uint64_t b, emit_fn emit)
{
    struct rec_buf *r = rec(p);
    rec_u64(r, a);
    rec_u64(r, b);
    emit(p, type);
}

/* A whole session: its will, itself, its subscriptions, packet ids and queues. */
static void
dump_session(struct persist *p, struct session *s, emit_fn emit)
{
    void (*msg_to)(struct persist *, struct msg *) =
        emit == to_journal ? journal_msg : snapshot_msg;
    if (s->will) msg_to(p, s->will->m);
    emit_session(p, s, emit);
    for (uint32_t i = 0; i < s->nsubs; i++) emit_sub(p, s, &s->subs[i], emit);
    for (uint32_t i = 0; i < s->nin; i++) emit_ids(p, R_IN_PUT, s->store_id, s->in_pids[i], emit);
    for (int pass = 0; pass < 2; pass++) {
        for (struct qentry *e = pass ? s->q_head : s->if_head; e; e = e->next) {
            if (e->qos == 0) continue; /* never kept */
            msg_to(p, e->m);
            emit_qentry(p, s, e, emit);
        }
    }
}

/* ---- what the session layer reports ---- */

static struct persist *
live(const struct broker *b)
{
    struct persist *p = b->persist;
    return p && !p->replaying ? p : NULL;
}

void
persist_retain(struct broker *b, struct msg *m)
{
    struct persist *p = live(b);
    if (!p) return;
    if (m->payload_len == 0) {
        struct rec_buf *r = rec(p);
        rec_str(r, m->topic, m->topic_len);
        to_journal(p, R_RETAIN_DEL);
        return;
    }
    journal_msg(p, m);
    emit_retain(p, m, to_journal);
}

static void
emit_kv(struct persist *p, const char *key, size_t klen, const char *value, size_t vlen,
        int64_t expires_ms, emit_fn emit)
{
    struct rec_buf *r = rec(p);
    rec_str(r, key, klen);
    if (!value) {
        emit(p, R_KV_DEL);
        return;
    }
    rec_bytes(r, value, vlen);
    rec_u64(r, (uint64_t)expires_ms);
    emit(p, R_KV_PUT);
}

void
persist_kv(void *ud, const char *key, size_t klen, const char *value, size_t vlen,
           int64_t expires_ms)
{
    struct persist *p = live(ud);
    if (p) emit_kv(p, key, klen, value, vlen, expires_ms, to_journal);
}

void
persist_session(struct session *s)
{
    struct persist *p = live(s->b);
    if (!p) return;
    if (s->expiry == 0) { /* it ends with its connection: whatever was kept goes */
        if (s->store_id) emit_ids(p, R_SESS_DEL, s->store_id, 0, to_journal);
        s->store_id = 0;
        return;
    }
    if (s->store_id) {
        if (s->will) journal_msg(p, s->will->m);
        emit_session(p, s, to_journal);
        return;
    }
    s->store_id = ++p->next_sid; /* a new one, or one that now outlives its connection */
    group_begin(p);
    dump_session(p, s, to_journal);
    group_end(p);
}

void
persist_session_end(struct session *s)
{
    struct persist *p = live(s->b);
    if (p && s->store_id) emit_ids(p, R_SESS_DEL, s->store_id, 0, to_journal);
    s->store_id = 0;
    if (p) {
        for (size_t i = 0; i < p->npaused; i++)
            if (p->paused[i] == s) p->paused[i--] = p->paused[--p->npaused];
    }
}

void
persist_sub(struct session *s, const struct ssub *x)
{
    struct persist *p = live(s->b);
    if (p && s->store_id) emit_sub(p, s, x, to_journal);
}

void
persist_unsub(struct session *s, const struct ssub *x)
{
    struct persist *p = live(s->b);
    if (!p || !s->store_id) return;
    struct rec_buf *r = rec(p);
    rec_u64(r, s->store_id);
    rec_str(r, x->filter, strlen(x->filter));
    rec_str(r, x->group ? x->group : "", x->group ? strlen(x->group) : 0);
    to_journal(p, R_SUB_DEL);
}

void
persist_qentry(struct session *s, const struct qentry *e)
{
    struct persist *p = live(s->b);
    if (!p || !s->store_id || e->qos == 0) return;
    journal_msg(p, e->m);
    emit_qentry(p, s, e, to_journal);
}

void
persist_qentry_done(struct session *s, const struct qentry *e)
{
    struct persist *p = live(s->b);
    if (p && s->store_id && e->qos) emit_ids(p, R_QE_DEL, s->store_id, e->m->store_id, to_journal);
}

void
persist_in_pid(struct session *s, uint16_t pid, bool add)
{
    struct persist *p = live(s->b);
    if (p && s->store_id) emit_ids(p, add ? R_IN_PUT : R_IN_DEL, s->store_id, pid, to_journal);
}

uint64_t
persist_seq(const struct broker *b)
{
    const struct persist *p = live(b);
    return p ? store_appended(p->st) : 0;
}

/* Only records appended since `since` (by this packet) hold the output: what came
 * before is held already if it must be, and a client whose packets changed nothing
 * durable (a clean session, QoS 0) is not made to wait, not even for a failing disk.
 * Durability is a prefix: waiting for the last record waits for all before it. */
void
persist_gate_conn(struct broker *b, struct conn *c, uint64_t since)
{
    struct persist *p = live(b);
    if (!p || !c) return;
    uint64_t want = store_appended(p->st);
    if (want > since && want > store_durable(p->st)) conn_gate(c, want);
}

void
persist_gate(struct session *s, uint64_t since)
{
    persist_gate_conn(s->b, s->conn, since);
}

#ifdef LUNAMQ_CHECKS
/* The test build's ordering check: an acknowledgement written now leaves after its
 * records are durable: either they are, or the output is held for them. */
void
persist_check_ack(const struct session *s, uint64_t since)
{
    struct persist *p = live(s->b);
    if (!p || !s->conn) return;
    uint64_t need = store_appended(p->st);
    if (need > since && need > store_durable(p->st) && conn_gate_seq(s->conn) < need) {
        lq_log(LQ_LOG_ERR,
               "ordering check: an ack for sequence %llu would leave before it is "
               "durable (%llu)",
               (unsigned long long)need, (unsigned long long)store_durable(p->st));
        abort();
    }
}
#endif

/* The writer is behind: stop reading this publisher until it catches up, if its
 * PUBLISH added to the backlog (appended since `since`); one whose messages are never
 * written (QoS 0 or clean subscribers only) is not made to wait for the others. */
void
persist_pause_if_behind(struct session *s, uint64_t since)
{
    struct persist *p = live(s->b);
    if (!p || !s->conn || conn_is_paused(s->conn) || store_appended(p->st) == since ||
        !store_backlogged(p->st))
        return;
    if (p->npaused == p->cap_paused) {
        p->cap_paused = p->cap_paused ? 2 * p->cap_paused : 16;
        p->paused = lq_xrealloc(p->paused, p->cap_paused * sizeof(*p->paused));
    }
    p->paused[p->npaused++] = s;
    conn_pause(s->conn);
}

static void
resume_paused(struct persist *p)
{
    for (size_t i = 0; i < p->npaused; i++) {
        struct session *s = p->paused[i];
        if (s->conn && !(s->hold && s->hold->conn_paused)) conn_resume(s->conn);
    }
    p->npaused = 0;
}

static void
on_durable(uint64_t durable, void *ud)
{
    struct persist *p = ud;
    struct broker *b = p->b;
    for (size_t i = 0; i < b->nlisteners; i++) listener_release(b->listeners[i], durable);
    if (p->npaused && !store_backlogged(p->st)) resume_paused(p);
    bool failing = store_failing(p->st);
    if (failing != p->failing) {
        p->failing = failing;
        lq_log(failing ? LQ_LOG_ERR : LQ_LOG_NOTICE,
               failing ? "persistence: the journal cannot be written: QoS 1/2 messages are not "
                         "acknowledged until it can (QoS 0 goes on)"
                       : "persistence: the journal is written again");
    }
}

/* ---- compaction ---- */

/* The next slice after the loop has polled for I/O: event_active would run it in this
 * same loop iteration, and the whole snapshot with it. */
static void
next_slice(struct persist *p)
{
    static const struct timeval now = {0, 0};
    if (event_add(p->slice_ev, &now) < 0) event_active(p->slice_ev, EV_TIMEOUT, 0);
}

static bool
snapshot_kv(void *arg, const char *key, size_t klen, const char *value, size_t vlen,
            int64_t expires_ms)
{
    struct persist *p = arg;
    emit_kv(p, key, klen, value, vlen, expires_ms, to_snapshot);
    p->snap_kv_after.len = 0;
    sbuf_put(&p->snap_kv_after, key, klen);
    return true;
}

static void
slice_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct persist *p = arg;
    struct broker *b = p->b;
    if (store_snapshot_backlog(p->st) > SNAP_BACKLOG) { /* let the writer catch up */
        struct timeval tv = {0, 5000};
        event_add(p->slice_ev, &tv);
        return;
    }
    uint64_t end = lq_now_ms() + SLICE_MS;
    unsigned n = 0;
    while (!p->snap_retained_done) {
        struct msg *m = retain_iter_next(b->retained);
        if (!m) {
            p->snap_retained_done = true;
            break;
        }
        if (topic_is_sys(m->topic, m->topic_len)) continue; /* the broker's, made anew */
        snapshot_msg(p, m);
        emit_retain(p, m, to_snapshot);
        if (++n % 256 == 0 && lq_now_ms() >= end) goto again;
    }
    /* sessions by registry bucket: the table may double meanwhile, which moves a
     * session from bucket k to k or k + n, never below the cursor; the ones it moves
     * above it are written twice, harmlessly */
    while (p->snap_bucket < b->nbuckets) {
        for (struct session *s = b->buckets[p->snap_bucket]; s; s = s->hnext)
            if (s->store_id) dump_session(p, s, to_snapshot);
        p->snap_bucket++;
        if (++n % 64 == 0 && lq_now_ms() >= end) goto again;
    }
    while (!p->snap_kv_done) {
        size_t got = kv_each_after(b->kv, p->snap_kv_after.p, p->snap_kv_after.len,
                                   (int64_t)wall_ms(), 256, snapshot_kv, p);
        if (got < 256) p->snap_kv_done = true;
        if (lq_now_ms() >= end) goto again;
    }
    store_snapshot_end(p->st, true);
    return;
again:
    next_slice(p);
}

static int
compact(struct persist *p)
{
    if (store_snapshot_begin(p->st) < 0) return -1;
    p->jgen += 2; /* records from now on go to the new segment */
    p->snap_retained_done = false;
    p->snap_bucket = 0;
    p->snap_kv_done = false;
    p->snap_kv_after.len = 0;
    retain_iter_begin(p->b->retained);
    p->last_compaction = lq_wall_time();
    struct store_stats ss;
    store_get_stats(p->st, &ss);
    p->records_at_compaction = ss.appended;
    next_slice(p);
    return 0;
}

int
persist_snapshot_now(struct broker *b)
{
    struct persist *p = live(b);
    if (!p) return -1;
    return compact(p);
}

static void
on_snapshot_done(bool ok, void *ud)
{
    (void)ud;
    if (!ok) lq_log(LQ_LOG_ERR, "persistence: snapshot failed; the journal is kept");
}

/* Every second: compact when the journal grew enough (autosave_interval seconds,
 * or changes with autosave_on_changes; and always past max(64 MiB, 2 x snapshot)). */
static void
tick_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct persist *p = arg;
    const struct lq_conf *c = &p->b->conf;
    struct store_stats ss;
    store_get_stats(p->st, &ss);
    p->batches_rate = ss.batches - p->batches_last;
    p->batches_last = ss.batches;
    if (store_snapshot_running(p->st) || !ss.journal_records) return;
    uint64_t changes = ss.appended - p->records_at_compaction;
    uint64_t big =
        ss.last_snapshot_bytes * 2 > COMPACT_MIN ? ss.last_snapshot_bytes * 2 : COMPACT_MIN;
    bool due = ss.journal_bytes > big;
    if (c->autosave_interval) {
        if (c->autosave_on_changes)
            due |= changes >= c->autosave_interval;
        else
            due |= changes && lq_wall_time() - p->last_compaction >= c->autosave_interval;
    }
    if (due) compact(p);
}

/* ---- recovery ---- */

/* A map from one or two 64-bit keys (a is never 0: ids start at 1) to a pointer and a
 * number, for replay only: open addressing with Fibonacci hashing (the high bits of the
 * product: sequential ids spread), never deletes (values are cleared instead). */
struct rmap_ent {
    uint64_t a, b;
    void *v;
    uint64_t aux;
};
struct rmap {
    struct rmap_ent *e;
    size_t n, cap;
    unsigned shift; /* 64 - log2(cap) */
};

static struct rmap_ent *
rmap_slot(struct rmap *m, uint64_t a, uint64_t b, bool add)
{
    if (add && (m->n + 1) * 4 > m->cap * 3) {
        struct rmap old = *m;
        m->cap = m->cap ? 2 * m->cap : 1024;
        m->shift = old.cap ? old.shift - 1 : 64 - 10;
        m->e = lq_xcalloc(m->cap, sizeof(*m->e));
        m->n = 0;
        for (size_t i = 0; i < old.cap; i++)
            if (old.e[i].a) *rmap_slot(m, old.e[i].a, old.e[i].b, true) = old.e[i];
        free(old.e);
    }
    if (!m->cap) return NULL;
    uint64_t h = (a * 0x9e3779b97f4a7c15ull) ^ (b * 0xbf58476d1ce4e5b9ull);
    for (size_t i = (size_t)(h * 0x9e3779b97f4a7c15ull >> m->shift);; i = (i + 1) & (m->cap - 1)) {
        struct rmap_ent *x = &m->e[i];
        if (x->a == a && x->b == b) return x;
        if (!x->a) {
            if (!add) return NULL;
            *x = (struct rmap_ent){.a = a, .b = b};
            m->n++;
            return x;
        }
    }
}

/* Message ids are handed out in sequence, so the messages read back are found in pages
 * of MID_PAGE slots (found by page number in a small map), not in a hash of millions of
 * entries that misses the cache on every lookup. A slot: NULL (unknown), MID_EXPIRED or
 * the message. */
#define MID_PAGE 4096
static char mid_expired;
#define MID_EXPIRED ((struct msg *)(void *)&mid_expired)

static struct msg **
mid_slot(struct rmap *pages, uint64_t mid, bool add)
{
    struct rmap_ent *x = rmap_slot(pages, mid / MID_PAGE + 1, 0, add);
    if (!x) return NULL;
    if (!x->v) {
        if (!add) return NULL;
        x->v = lq_xcalloc(MID_PAGE, sizeof(struct msg *));
    }
    return (struct msg **)x->v + mid % MID_PAGE;
}

/* A queue entry read back: placed in its session once everything is read. */
struct rq {
    uint64_t sid, mid, order;
    struct msg *m; /* its own reference; NULL: expired while the broker was down */
    uint8_t qos, state, flags;
    bool live;
    bool snap;      /* from the snapshot: no map entry; the journal's may amend it */
    bool merged;    /* a journal entry folded into the snapshot's entry of its key */
    bool after_del; /* a journal entry for a key deleted before it: a new place */
    uint16_t pid;
    uint32_t nsub, ids_at;
};

struct replay {
    struct persist *p;
    struct rec_buf group; /* records of an open group: type, u32 length, bytes */
    uint64_t dropped_group, torn_groups;
    struct rmap msgs;     /* mid / MID_PAGE + 1 -> a page of messages (mid_slot) */
    struct rmap sessions; /* sid -> struct session, aux: offline since (wall ms) */
    struct rmap qmap;     /* (sid, mid) -> index in q + 1, of the journal's entries only */
    struct rq *q;
    size_t nq, capq;
    uint32_t *ids;
    size_t nids, capids;
    uint64_t order, now_wall, now_mono, bad, unresolved, records;
    uint64_t dup_sid; /* a session the snapshot wrote twice: its second dump is skipped */
    /* the message last put: the record after it usually refers to it */
    uint64_t last_mid;
    struct msg *last_msg;
};

static bool
get_str(struct rec_reader *r, const char **s, uint32_t *n)
{
    const uint8_t *b;
    if (!rec_get_bytes(r, &b, n)) return false;
    *s = (const char *)b;
    return true;
}

static void
replay_msg(struct replay *rp, struct rec_reader *r)
{
    uint64_t mid, expire, created;
    uint8_t qos, retain, has_expiry;
    const uint8_t *topic, *props, *payload;
    uint32_t tlen, plen, ylen;
    if (!rec_get_u64(r, &mid) || !rec_get_u8(r, &qos) || !rec_get_u8(r, &retain) ||
        !rec_get_u8(r, &has_expiry) || !rec_get_u64(r, &expire) || !rec_get_u64(r, &created) ||
        !rec_get_bytes(r, &topic, &tlen) || !rec_get_bytes(r, &props, &plen) ||
        !rec_get_bytes(r, &payload, &ylen) || tlen > UINT16_MAX || qos > 2 || mid == 0) {
        rp->bad++;
        return;
    }
    if (mid >= rp->p->next_mid) rp->p->next_mid = mid;
    struct msg **x = mid_slot(&rp->msgs, mid, true);
    if (*x != MID_EXPIRED) msg_unref(*x); /* the same again (a later generation): the newest */
    *x = MID_EXPIRED;
    rp->last_mid = mid;
    rp->last_msg = NULL;
    uint64_t now = rp->now_mono;
    if (has_expiry && expire <= rp->now_wall) return; /* expired while the broker was down */
    uint64_t age = rp->now_wall > created ? rp->now_wall - created : 0;
    struct msg_init in = {
        .topic = (const char *)topic,
        .topic_len = tlen,
        .payload = payload,
        .payload_len = ylen,
        .props = props,
        .props_len = plen,
        .qos = qos,
        .retain = retain,
        .has_expiry = has_expiry,
        .created_ms = now > age ? now - age : 1,
        .expire_at_ms = has_expiry ? now + (expire - rp->now_wall) : 0,
    };
    struct msg *m = msg_new(&in);
    m->store_id = mid;
    m->store_gen = rp->p->jgen;
    *x = m;
    rp->last_msg = m;
}

static struct msg *
replay_find_msg(struct replay *rp, uint64_t mid, bool *known)
{
    if (mid && mid == rp->last_mid) {
        *known = true;
        return rp->last_msg;
    }
    struct msg **x = mid ? mid_slot(&rp->msgs, mid, false) : NULL;
    *known = x && *x;
    return x && *x != MID_EXPIRED ? *x : NULL;
}

static void
replay_retain(struct replay *rp, struct rec_reader *r, bool put)
{
    const char *topic;
    uint32_t tlen;
    uint64_t mid = 0;
    if (!get_str(r, &topic, &tlen) || (put && !rec_get_u64(r, &mid))) {
        rp->bad++;
        return;
    }
    struct broker *b = rp->p->b;
    bool known = false;
    struct msg *m = put ? replay_find_msg(rp, mid, &known) : NULL;
    if (put && !known) rp->unresolved++;
    if (m && m->topic_len == tlen && memcmp(m->topic, topic, tlen) == 0)
        retain_set(b->retained, m);
    else
        retain_clear(b->retained, topic, tlen);
}

static struct session *
replay_session_of(struct replay *rp, uint64_t sid)
{
    struct rmap_ent *x = rmap_slot(&rp->sessions, sid, 0, false);
    return x ? x->v : NULL;
}

static void
replay_session_gone(struct replay *rp, uint64_t sid)
{
    struct rmap_ent *x = rmap_slot(&rp->sessions, sid, 0, false);
    if (!x || !x->v) return;
    struct session *s = x->v;
    session_clear_will(s); /* a will is published by the broker that ends it, not here */
    session_end(s);
    x->v = NULL;
}

static void
replay_session(struct replay *rp, struct rec_reader *r, bool from_snapshot)
{
    uint64_t sid, since, will_mid = 0;
    const char *id, *user, *will_user = "";
    uint32_t idlen, ulen, expiry, will_delay = 0, wulen = 0;
    uint8_t version, has_will;
    if (!rec_get_u64(r, &sid) || !get_str(r, &id, &idlen) || !rec_get_u32(r, &expiry) ||
        !rec_get_u8(r, &version) || !rec_get_u64(r, &since) || !get_str(r, &user, &ulen) ||
        !rec_get_u8(r, &has_will) ||
        (has_will && (!rec_get_u64(r, &will_mid) || !rec_get_u32(r, &will_delay) ||
                      !get_str(r, &will_user, &wulen))) ||
        sid == 0 || idlen == 0) {
        rp->bad++;
        return;
    }
    struct persist *p = rp->p;
    if (sid >= p->next_sid) p->next_sid = sid;
    struct session *s = replay_session_of(rp, sid);
    rp->dup_sid = 0;
    if (s && from_snapshot) { /* written twice (the registry grew under the snapshot) */
        rp->dup_sid = sid;
        return;
    }
    if (!s) {
        struct session *old = registry_find(p->b, id, idlen);
        if (old) { /* an older one of this client, never deleted */
            struct rmap_ent *o = rmap_slot(&rp->sessions, old->store_id, 0, false);
            if (o) o->v = NULL;
            session_clear_will(old);
            session_end(old);
        }
        s = session_new(p->b, id, idlen);
        s->store_id = sid;
        rmap_slot(&rp->sessions, sid, 0, true)->v = s;
    }
    rmap_slot(&rp->sessions, sid, 0, true)->aux = since;
    s->expiry = expiry;
    s->connect_expiry = expiry;
    s->version = version;
    free(s->username);
    s->username = ulen ? lq_xstrndup(user, ulen) : NULL;
    session_clear_will(s);
    bool known;
    struct msg *wm = has_will ? replay_find_msg(rp, will_mid, &known) : NULL;
    if (wm) {
        session_set_will(s, msg_ref(wm), will_delay);
        free(s->will->username);
        s->will->username = wulen ? lq_xstrndup(will_user, wulen) : NULL;
    }
}

static void
replay_sub(struct replay *rp, struct rec_reader *r, bool put)
{
    uint64_t sid;
    const char *filter, *group;
    uint32_t flen, glen, sub_id = 0;
    uint8_t qos = 0, flags = 0;
    if (!rec_get_u64(r, &sid) || !get_str(r, &filter, &flen) || !get_str(r, &group, &glen) ||
        (put && (!rec_get_u8(r, &qos) || !rec_get_u8(r, &flags) || !rec_get_u32(r, &sub_id))) ||
        !topic_filter_is_valid(filter, flen) || qos > 2) {
        rp->bad++;
        return;
    }
    struct session *s = replay_session_of(rp, sid);
    if (!s) return;
    struct broker *b = rp->p->b;
    const char *g = glen ? group : NULL;
    struct ssub *x = session_sub_find(s, filter, flen, g, glen);
    if (!put) {
        if (!x) return;
        topic_tree_remove(b->subs, filter, flen, g, glen, s);
        session_sub_remove(s, x);
        return;
    }
    struct sub_opts o = {.qos = qos,
                         .no_local = flags & 1,
                         .retain_as_published = (flags >> 1) & 1,
                         .retain_handling = (flags >> 2) & 3,
                         .sub_id = sub_id};
    topic_tree_add(b->subs, filter, flen, g, glen, s, &o);
    if (!x) x = session_sub_add(s, filter, flen, g, glen);
    x->o = o;
}

static struct rq *
rq_new(struct replay *rp, uint64_t mid)
{
    if (rp->nq == rp->capq) {
        rp->capq = rp->capq ? 2 * rp->capq : 1024;
        rp->q = lq_xrealloc(rp->q, rp->capq * sizeof(*rp->q));
    }
    struct rq *q = &rp->q[rp->nq++];
    memset(q, 0, sizeof(*q));
    q->order = ++rp->order; /* the array is in this order: no sort needed */
    bool known;
    q->m = replay_find_msg(rp, mid, &known);
    if (q->m) msg_ref(q->m);
    if (!known) rp->unresolved++;
    return q;
}

/* A snapshot holds each entry once (a session written twice is skipped whole), and no
 * deletes: its entries go straight into the array. The journal's are found by key, to
 * amend or delete, and amend the snapshot's at the end (replay_queues). */
static void
replay_qentry(struct replay *rp, struct rec_reader *r, bool put, bool from_snapshot)
{
    uint64_t sid, mid;
    uint8_t qos = 0, state = 0, flags = 0;
    uint16_t pid = 0;
    uint32_t nsub = 0;
    if (!rec_get_u64(r, &sid) || !rec_get_u64(r, &mid) || !sid || !mid ||
        (put && (!rec_get_u8(r, &qos) || !rec_get_u8(r, &state) || !rec_get_u16(r, &pid) ||
                 !rec_get_u8(r, &flags) || !rec_get_u32(r, &nsub) || nsub > (r->len - r->at) / 4 ||
                 qos < 1 || qos > 2 || state > Q_WAIT_PUBCOMP))) {
        rp->bad++;
        return;
    }
    struct rq *q;
    if (from_snapshot) {
        if (!put || sid == rp->dup_sid) return;
        q = rq_new(rp, mid);
        q->snap = true;
    } else {
        struct rmap_ent *x = rmap_slot(&rp->qmap, sid, mid, true);
        struct rq *was = x->aux ? &rp->q[x->aux - 1] : NULL;
        if (!put) {
            if (!was) { /* a marker: the snapshot's entry of this key is gone */
                was = rq_new(rp, mid);
                x->aux = rp->nq;
            }
            was->live = false;
            return;
        }
        if (was && was->live) {
            q = was; /* a new state: its place in the queue stays */
        } else {
            q = rq_new(rp, mid);
            q->after_del = was != NULL;
            x->aux = rp->nq;
        }
    }
    q->sid = sid;
    q->mid = mid;
    q->qos = qos;
    q->state = state;
    q->pid = pid;
    q->flags = flags;
    q->live = true;
    q->nsub = nsub;
    if (rp->nids + nsub > rp->capids) {
        rp->capids = (rp->nids + nsub) * 2;
        rp->ids = lq_xrealloc(rp->ids, rp->capids * sizeof(*rp->ids));
    }
    q->ids_at = (uint32_t)rp->nids;
    for (uint32_t i = 0; i < nsub; i++) rec_get_u32(r, &rp->ids[rp->nids++]);
}

static void
replay_in(struct replay *rp, struct rec_reader *r, bool put)
{
    uint64_t sid, pid;
    if (!rec_get_u64(r, &sid) || !rec_get_u64(r, &pid) || pid == 0 || pid > UINT16_MAX) {
        rp->bad++;
        return;
    }
    struct session *s = replay_session_of(rp, sid);
    if (!s || sid == rp->dup_sid) return;
    uint32_t at;
    bool has = in_pid_find(s, (uint16_t)pid, &at);
    if (put && !has) in_pid_add(s, (uint16_t)pid); /* records nothing while replaying */
    if (!put && has) s->in_pids[at] = s->in_pids[--s->nin];
}

static void
replay_kv(struct replay *rp, struct rec_reader *r, bool put)
{
    struct kv *kv = rp->p->b->kv;
    const char *key, *value = NULL;
    uint32_t klen, vlen = 0;
    uint64_t expires = 0;
    if (!get_str(r, &key, &klen) ||
        (put && (!get_str(r, &value, &vlen) || !rec_get_u64(r, &expires)))) {
        rp->bad++;
        return;
    }
    if (put)
        kv_restore(kv, key, klen, value, vlen, (int64_t)expires, (int64_t)rp->now_wall);
    else
        kv_del(kv, key, klen); /* reports nothing while replaying: live() is NULL */
}

static void apply_record(struct replay *rp, uint8_t type, const uint8_t *p, size_t len,
                         bool from_snapshot);

static void
replay_record(uint8_t type, const uint8_t *p, size_t len, bool from_snapshot, void *arg)
{
    struct replay *rp = arg;
    if ((++rp->records & 255) == 0) lq_heap_bulk_step();
    /* the skipping of a session the snapshot wrote twice ends with the snapshot */
    if (!from_snapshot) rp->dup_sid = 0;
    if (type & R_GROUPED) { /* applied with the rest of its group */
        rec_u8(&rp->group, type & ~R_GROUPED);
        rec_bytes(&rp->group, p, len);
        rp->dropped_group++;
        return;
    }
    if (type == R_GROUP_END && rp->group.len) { /* the group is whole: apply it */
        struct rec_reader g = {.p = rp->group.p, .len = rp->group.len};
        uint8_t t;
        const uint8_t *b;
        uint32_t n;
        while (rec_get_u8(&g, &t) && rec_get_bytes(&g, &b, &n)) apply_record(rp, t, b, n, false);
    } else if (rp->group.len) { /* torn: R_GROUP_TORN, or a journal from before it */
        rp->torn_groups++;
    }
    rp->group.len = 0;
    rp->dropped_group = 0;
    if (type != R_GROUP_END && type != R_GROUP_TORN) apply_record(rp, type, p, len, from_snapshot);
}

static void
apply_record(struct replay *rp, uint8_t type, const uint8_t *p, size_t len, bool from_snapshot)
{
    struct rec_reader r = {.p = p, .len = len};
    switch (type) {
    case R_MSG_PUT: replay_msg(rp, &r); break;
    case R_RETAIN_PUT: replay_retain(rp, &r, true); break;
    case R_RETAIN_DEL: replay_retain(rp, &r, false); break;
    case R_SESS_PUT: replay_session(rp, &r, from_snapshot); break;
    case R_SESS_DEL: {
        uint64_t sid;
        if (rec_get_u64(&r, &sid)) replay_session_gone(rp, sid);
        break;
    }
    case R_SUB_PUT: replay_sub(rp, &r, true); break;
    case R_SUB_DEL: replay_sub(rp, &r, false); break;
    case R_QE_PUT: replay_qentry(rp, &r, true, from_snapshot); break;
    case R_QE_DEL: replay_qentry(rp, &r, false, from_snapshot); break;
    case R_IN_PUT: replay_in(rp, &r, true); break;
    case R_IN_DEL: replay_in(rp, &r, false); break;
    case R_KV_PUT: replay_kv(rp, &r, true); break;
    case R_KV_DEL: replay_kv(rp, &r, false); break;
    default: rp->bad++; break;
    }
}

/* A snapshot entry amended by the journal: deleted, re-queued (a new place), or a new
 * state in its old place. */
static void
merge_journal(struct replay *rp, struct rq *q)
{
    struct rmap_ent *x = rmap_slot(&rp->qmap, q->sid, q->mid, false);
    if (!x) return;
    struct rq *j = &rp->q[x->aux - 1];
    if (!j->live || j->after_del) {
        q->live = false;
        return;
    }
    q->state = j->state;
    q->pid = j->pid;
    q->flags = j->flags;
    j->merged = true;
}

/* Queue entries into their sessions, in the order they were first queued. */
static void
replay_queues(struct replay *rp)
{
    if (rp->qmap.n)
        for (size_t i = 0; i < rp->nq; i++)
            if (rp->q[i].snap && rp->q[i].live) merge_journal(rp, &rp->q[i]);
    for (size_t i = 0; i < rp->nq; i++) {
        const struct rq *q = &rp->q[i];
        if (!q->live || q->merged) continue;
        struct session *s = replay_session_of(rp, q->sid);
        struct msg *m = q->m;
        if (!s || !m) continue; /* gone, or expired while the broker was down */
        session_restore_entry(s, m, q->qos, q->state, q->pid, q->flags & 1, (q->flags >> 1) & 1,
                              &rp->ids[q->ids_at], q->nsub);
    }
}

/* Sessions are offline after a restart: their will delay and expiry run from when
 * they went offline (a session connected at the crash: from now). */
static void
replay_timers(struct replay *rp)
{
    for (size_t i = 0; i < rp->sessions.cap; i++) {
        struct rmap_ent *x = &rp->sessions.e[i];
        struct session *s = x->v;
        if (!s) continue;
        uint64_t since = x->aux ? x->aux : rp->now_wall;
        uint64_t gone = rp->now_wall > since ? (rp->now_wall - since) / 1000 : 0;
        session_restore_timers(s, (uint32_t)(gone > UINT32_MAX ? UINT32_MAX : gone));
    }
}

static void
replay_free(struct replay *rp)
{
    for (size_t i = 0; i < rp->msgs.cap; i++) {
        struct msg **page = rp->msgs.e[i].v;
        for (size_t k = 0; page && k < MID_PAGE; k++)
            if (page[k] != MID_EXPIRED) msg_unref(page[k]);
        free(page);
    }
    for (size_t i = 0; i < rp->nq; i++) msg_unref(rp->q[i].m);
    free(rp->msgs.e);
    free(rp->sessions.e);
    free(rp->qmap.e);
    free(rp->q);
    free(rp->ids);
    rec_buf_free(&rp->group);
}

/* Startup after a corrupt journal: the valid prefix becomes a snapshot at once. */
static void
snapshot_now(struct persist *p)
{
    if (compact(p) < 0) return;
    event_del(p->slice_ev);
    while (store_snapshot_running(p->st) && !p->snap_retained_done) slice_cb(-1, 0, p);
    while (store_snapshot_running(p->st) && p->snap_bucket < p->b->nbuckets) slice_cb(-1, 0, p);
    event_del(p->slice_ev);
    if (!store_snapshot_wait(p->st))
        lq_log(LQ_LOG_ERR, "persistence: the snapshot after the corrupt journal failed");
}

static int
recover(struct persist *p, char *err, size_t errlen)
{
    struct replay rp = {.p = p, .now_wall = wall_ms(), .now_mono = lq_now_ms()};
    struct store_recovery info;
    double t0 = lq_wall_time(); /* the whole of it: reading, then queues and timers */
    p->replaying = true;
    lq_heap_bulk_begin();
    int rc = store_recover(p->st, replay_record, &rp, &info, err, errlen);
    store_crash_point("recovery");
    if (rc == 0) {
        replay_queues(&rp);
        replay_timers(&rp);
    }
    p->replaying = false;
    replay_free(&rp);
    lq_heap_bulk_end();
    if (rc < 0) return -1;
    p->recovery_seconds = lq_wall_time() - t0;
    lq_log(LQ_LOG_NOTICE,
           "persistence: recovered %zu sessions, %zu retained messages from %llu records "
           "(%llu bytes%s, %u segments) in %.3f s%s%s",
           p->b->nsessions, retain_count(p->b->retained), (unsigned long long)info.records,
           (unsigned long long)info.bytes, info.snapshot_seq ? ", with a snapshot" : "",
           info.segments, p->recovery_seconds, info.truncated_tail ? "; torn tail cut off" : "",
           info.corrupt ? "; CORRUPT journal: replay stopped at the first bad record" : "");
    if (rp.dropped_group) { /* this run's first record says so to every later replay */
        store_append(p->st, R_GROUP_TORN, NULL, 0);
        lq_log(LQ_LOG_NOTICE,
               "persistence: the journal ended inside one change (%llu records, "
               "never acknowledged): left out",
               (unsigned long long)rp.dropped_group);
    }
    if (rp.torn_groups)
        lq_log(LQ_LOG_INFO,
               "persistence: %llu changes cut short by earlier crashes (never acknowledged): "
               "left out",
               (unsigned long long)rp.torn_groups);
    if (rp.bad || rp.unresolved)
        lq_log(LQ_LOG_WARNING,
               "persistence: %llu records could not be read, %llu referred to "
               "messages not found: skipped",
               (unsigned long long)rp.bad, (unsigned long long)rp.unresolved);
    if (info.corrupt) snapshot_now(p);
    return 0;
}

/* ---- life cycle ---- */

int
persist_open(struct broker *b, char *err, size_t errlen)
{
    const struct lq_conf *c = &b->conf;
    if (!c->persistence) return 0;
    const char *dir = c->persistence_location ? c->persistence_location : ".";
    if (c->persistence_file)
        lq_log(LQ_LOG_NOTICE,
               "persistence_file %s: ignored, lunamq keeps a journal in the directory %s "
               "(persistence_location)",
               c->persistence_file, dir);
    struct persist *p = lq_xcalloc(1, sizeof(*p));
    p->b = b;
    p->jgen = 2;
    struct store_opts o = {.dir = dir,
                           .sync =
                               c->persistence_sync_process ? STORE_SYNC_PROCESS : STORE_SYNC_POWER,
                           .max_backlog = DEFAULT_BACKLOG,
                           .on_durable = on_durable,
                           .on_snapshot_done = on_snapshot_done,
                           .ud = p};
    p->st = store_open(b->base, &o, err, errlen);
    if (!p->st) {
        free(p);
        return -1;
    }
    b->persist = p;
    p->slice_ev = event_new(b->base, -1, 0, slice_cb, p);
    p->tick_ev = event_new(b->base, -1, EV_PERSIST, tick_cb, p);
    struct timeval sec = {1, 0};
    if (!p->slice_ev || !p->tick_ev || event_add(p->tick_ev, &sec) < 0) {
        snprintf(err, errlen, "persistence: cannot make its events");
        return -1;
    }
    p->last_compaction = lq_wall_time();
    if (recover(p, err, errlen) < 0) return -1;
    lq_log(LQ_LOG_NOTICE, "persistence: journal in %s, persistence_sync %s", dir,
           c->persistence_sync_process ? "process (write before an ack, fdatasync every second)"
                                       : "power (fdatasync before an ack)");
    return 0;
}

void
persist_close(struct broker *b)
{
    struct persist *p = b->persist;
    if (!p) return;
    b->persist = NULL; /* what the teardown does from now on is not recorded */
    if (p->slice_ev) {
        if (store_snapshot_running(p->st)) store_snapshot_end(p->st, false);
        event_free(p->slice_ev);
    }
    if (p->tick_ev) event_free(p->tick_ev);
    store_close(p->st);
    rec_buf_free(&p->rb);
    sbuf_free(&p->snap_kv_after);
    free(p->paused);
    free(p);
}

void
persist_get_stats(const struct broker *b, struct persist_stats *out)
{
    memset(out, 0, sizeof(*out));
    const struct persist *p = b->persist;
    out->enabled = p != NULL;
    if (!p) return;
    out->sync_process = b->conf.persistence_sync_process;
    store_get_stats(p->st, &out->store);
    out->recovery_seconds = p->recovery_seconds;
    out->batches_per_second = p->batches_rate;
    for (size_t i = 0; i < b->nlisteners; i++) out->acks_waiting += listener_gated(b->listeners[i]);
}
