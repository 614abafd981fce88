/* SPDX-License-Identifier: MIT
 *
 * cluster retained: the retained messages' JetStream stream (cluster_retained
 * jetstream). The cluster thread publishes each retained message a client sets here
 * into the stream (the last message per topic; an empty one clears), keeps the latest
 * of a topic waiting while NATS is down or too many wait for acknowledgements, and
 * reads the stream back through an ordered consumer; the loop applies every update to
 * the local store, its own too, so that all nodes end with the stream's order. The
 * set-up (creating the stream, subscribing) is a request each: it holds the thread, so
 * tries after failures grow apart. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/event.h>
#include <nats/nats.h>

#include "cluster_int.h"
#include "msg.h"

static void
on_retained(natsConnection *nc, natsSubscription *sub, natsMsg *msg, void *closure)
{
    (void)nc, (void)sub;
    cluster_inbox_put(closure, msg, NULL, false);
}

/* libnats: the stream took a retained message, or did not (or no answer in time). */
static void
on_js_ack(jsCtx *js, natsMsg *msg, jsPubAck *pa, jsPubAckErr *pae, void *closure)
{
    (void)js, (void)pa;
    struct cluster *c = closure;
    if (pae) atomic_fetch_add(&c->js_failed, 1);
    uint64_t left = atomic_fetch_sub(&c->js_pending, 1) - 1;
    natsMsg_Destroy(msg);
    if (left == JS_MAX_PENDING / 2 && atomic_load(&c->js_backlog)) { /* room for what waits */
        pthread_mutex_lock(&c->mu);
        pthread_cond_signal(&c->cv);
        pthread_mutex_unlock(&c->mu);
    }
}

/* The retained copy, to the stream, not waiting for its acknowledgement (on_js_ack):
 * the same header, the subject's m token made r. */
static void
publish_retained(struct cluster *c, struct op *op)
{
    int state = atomic_load(&c->js_state);
    if (state == JS_ABSENT || state == JS_OFF || !c->js) return; /* local only */
    char *subject = (char *)op->data; /* op->subject: libnats has copied it */
    subject[strlen(c->prefix) - 1] = 'r';
    natsMsg *nm = NULL;
    natsStatus s =
        natsMsg_Create(&nm, subject, NULL, (const char *)op->payload, (int)op->payload_len);
    if (s == NATS_OK)
        s = natsMsgHeader_Set(nm, "Lq-Msg", cluster_header_of(c, op, &c->js_hdr, &c->js_cap));
    jsPubOptions po;
    jsPubOptions_Init(&po);
    po.MaxWait = JS_ACK_WAIT_MS;
    atomic_fetch_add(&c->js_pending, 1);
    if (s == NATS_OK) s = js_PublishMsgAsync(c->js, &nm, &po);
    if (s != NATS_OK) {
        atomic_fetch_sub(&c->js_pending, 1);
        atomic_fetch_add(&c->js_failed, 1);
        lq_log_limited(&c->js_log, LQ_LOG_WARNING,
                       "cluster: a retained message on \"%.200s\" not published to JetStream: %s",
                       subject, natsStatus_GetText(s));
    }
    natsMsg_Destroy(nm); /* NULL once libnats took it */
}

/* Can a retained op go to the stream now? Not while NATS is down (it would wait in
 * libnats' reconnect buffer, with the messages, and its ack would time out) nor while
 * JS_MAX_PENDING wait for their acknowledgement. */
static bool
stream_has_room(struct cluster *c)
{
    return atomic_load(&c->connected) && atomic_load(&c->js_pending) < JS_MAX_PENDING;
}

bool
cluster_stream_or_keep(struct cluster *c, struct op *op)
{
    int state = atomic_load(&c->js_state);
    if (state == JS_ABSENT || state == JS_OFF || !c->js) return false;
    size_t n = strlen(op->subject);
    struct js_wait *w = levelmap_get(&c->js_waiting, op->subject, n);
    if (w) {
        cluster_pending_done(c, w->op->bytes);
        free(w->op);
        w->op = op;
        return true;
    }
    if (stream_has_room(c)) {
        publish_retained(c, op);
        return false;
    }
    w = lq_xmalloc(sizeof(*w));
    *w = (struct js_wait){.op = op};
    levelmap_put(&c->js_waiting, op->subject, n, w);
    *c->jw_tail = w;
    c->jw_tail = &w->next;
    atomic_store(&c->js_backlog, true);
    return true;
}

/* What was kept, to the stream, as far as there is room. */
void
cluster_stream_kept(struct cluster *c)
{
    while (c->jw_head && stream_has_room(c)) {
        struct js_wait *w = c->jw_head;
        c->jw_head = w->next;
        if (!c->jw_head) c->jw_tail = &c->jw_head;
        struct op *op = w->op;
        levelmap_del(&c->js_waiting, op->subject, strlen(op->subject));
        free(w);
        publish_retained(c, op);
        cluster_pending_done(c, op->bytes);
        free(op);
    }
    atomic_store(&c->js_backlog, c->jw_head != NULL);
}

/* libnats' last error of this thread, without its "(file.c:line): " */
static const char *
js_error(void)
{
    const char *e = nats_GetLastError(NULL);
    const char *past = e && e[0] == '(' ? strstr(e, "): ") : NULL;
    return past ? past + 3 : e ? e : "";
}

/* No stream: logged once (until a reconnection finds the same). */
static void
js_absent(struct cluster *c, const char *why, bool refused)
{
    if (atomic_load(&c->js_state) != JS_ABSENT && !refused)
        lq_log(LQ_LOG_WARNING,
               "cluster: the NATS server has no JetStream (%s): retained messages stay on "
               "each node (as with cluster_retained local) until it has",
               why);
    if (atomic_load(&c->js_state) != JS_ABSENT && refused)
        lq_log(LQ_LOG_ERR,
               "cluster: JetStream refused stream %s: %s: retained messages stay on each "
               "node (as with cluster_retained local) until a reconnection to NATS",
               c->stream, why);
    atomic_store(&c->js_state, JS_ABSENT);
    atomic_store(&c->js_nothing_to_load, true);
    (void)!write(c->pipe[1], "", 1); /* the loop looks (in_cb) */
}

static bool
js_unavailable(natsStatus s, jsErrCode jerr)
{
    return s == NATS_NO_RESPONDERS || jerr == JSNotEnabledErr || jerr == JSNotEnabledForAccountErr;
}

/* Creates the stream (or updates it to this node's settings; one that cannot be is
 * used as it is) and subscribes to it. Each step waits at most JS_WAIT_MS; on a
 * failure it is tried again JS_RETRY_MS later. */
void
cluster_js_setup(struct cluster *c)
{
    /* a NATS cluster without JetStream lets requests time out (no "no responders"):
     * each try holds this thread JS_WAIT_MS, so they grow apart */
    c->js_backoff_ms = c->js_backoff_ms ? c->js_backoff_ms * 2 : JS_RETRY_MS;
    if (c->js_backoff_ms > JS_RETRY_MAX_MS) c->js_backoff_ms = JS_RETRY_MAX_MS;
    c->js_next_try_ms = lq_now_ms() + c->js_backoff_ms;
    if (c->rsub) { /* the consumer before a reconnection: what it delivered stays first */
        natsSubscription_Destroy(c->rsub);
        c->rsub = NULL;
    }
    char subjects[200];
    snprintf(subjects, sizeof(subjects), "%s.>", c->rprefix);
    const char *subj[1] = {subjects};
    jsStreamConfig sc;
    jsStreamConfig_Init(&sc);
    sc.Name = c->stream;
    sc.Subjects = subj;
    sc.SubjectsLen = 1;
    sc.MaxMsgsPerSubject = 1; /* the last retained message of a topic */
    sc.Storage = js_FileStorage;
    sc.Replicas = c->replicas;
    jsStreamInfo *si = NULL;
    jsErrCode jerr = 0;
    natsStatus s = js_AddStream(&si, c->js, &sc, NULL, &jerr);
    if (s != NATS_OK && jerr == JSStreamNameExistErr) { /* with other settings */
        jerr = 0;
        s = js_UpdateStream(&si, c->js, &sc, NULL, &jerr);
        if (s != NATS_OK && !js_unavailable(s, jerr)) {
            lq_log(LQ_LOG_WARNING, "cluster: stream %s kept as it is (cluster_replicas %u?): %s",
                   c->stream, c->replicas, js_error());
            jerr = 0;
            s = js_GetStreamInfo(&si, c->js, c->stream, NULL, &jerr);
        }
    }
    if (js_unavailable(s, jerr)) return js_absent(c, natsStatus_GetText(s), false);
    if (s != NATS_OK && jerr) /* its answer (a setting): the same next time */
        return js_absent(c, js_error(), true);
    if (s != NATS_OK) {
        lq_log_limited(&c->js_log, LQ_LOG_WARNING,
                       "cluster: stream %s: %s: retained messages are not shared yet", c->stream,
                       js_error());
        return;
    }
    uint64_t last = si->State.LastSeq;
    jsStreamInfo_Destroy(si);
    jsSubOptions so;
    jsSubOptions_Init(&so);
    so.Stream = c->stream;
    so.Ordered = true; /* in stream order, none missed: libnats starts it again past a gap */
    so.Config.DeliverPolicy = js_DeliverLastPerSubject;
    jerr = 0;
    s = js_Subscribe(&c->rsub, c->js, subjects, on_retained, c, NULL, &so, &jerr);
    if (js_unavailable(s, jerr)) return js_absent(c, natsStatus_GetText(s), false);
    if (s != NATS_OK) {
        c->rsub = NULL;
        lq_log_limited(&c->js_log, LQ_LOG_WARNING, "cluster: stream %s: cannot consume it: %s (%d)",
                       c->stream, js_error(), (int)jerr);
        return;
    }
    c->js_backoff_ms = 0;
    /* loaded once what was its last message is applied (the last of its subject, or a
     * later one, comes) */
    atomic_store(&c->js_target, last + 1);
    if (last == 0) atomic_store(&c->js_nothing_to_load, true);
    atomic_store(&c->js_state, JS_READY);
    lq_log(LQ_LOG_NOTICE,
           "cluster: retained messages through JetStream stream %s (%" PRIu64 " messages)",
           c->stream, last);
    (void)!write(c->pipe[1], "", 1);
}

/* Is the stream to be set up now? After a reconnection, again: a server without
 * JetStream may have it now, one restarted may have lost the stream (created again)
 * or the consumer, and what changed meanwhile is loaded again (stores that have it
 * change nothing: the broker compares). */
bool
cluster_js_due(struct cluster *c)
{
    int state = atomic_load(&c->js_state);
    if (state != JS_OFF && state != JS_SETUP && atomic_exchange(&c->js_retry, false)) {
        atomic_store(&c->js_state, JS_SETUP);
        c->js_next_try_ms = 0;
        state = JS_SETUP;
    }
    return state == JS_SETUP && c->js && atomic_load(&c->connected) &&
           lq_now_ms() >= c->js_next_try_ms;
}

void
cluster_js_open(struct cluster *c)
{
    if (atomic_load(&c->js_state) == JS_OFF) return;
    jsOptions jo;
    jsOptions_Init(&jo);
    jo.Wait = JS_WAIT_MS;
    jo.PublishAsync.AckHandler = on_js_ack;
    jo.PublishAsync.AckHandlerClosure = c;
    if (!c->nc || natsConnection_JetStream(&c->js, c->nc, &jo) != NATS_OK) {
        c->js = NULL;
        atomic_store(&c->js_nothing_to_load, true);
        (void)!write(c->pipe[1], "", 1);
        return;
    }
    if (!atomic_load(&c->connected)) { /* NATS down at start: the local store, no waiting */
        atomic_store(&c->js_nothing_to_load, true);
        (void)!write(c->pipe[1], "", 1);
    }
}

void
cluster_js_close(struct cluster *c)
{
    if (c->js && atomic_load(&c->connected)) {
        jsPubOptions po;
        jsPubOptions_Init(&po);
        po.MaxWait = 1000; /* retained messages published, into the stream (bounded) */
        if (c->jw_head) js_PublishAsyncComplete(c->js, &po);
        cluster_stream_kept(c);
        js_PublishAsyncComplete(c->js, &po);
        if (c->rsub) natsSubscription_Unsubscribe(c->rsub); /* its consumer goes */
    }
    for (struct js_wait *w = c->jw_head, *next; w; w = next) { /* not sent: failed */
        next = w->next;
        atomic_fetch_add(&c->js_failed, 1);
        cluster_pending_done(c, w->op->bytes);
        free(w->op);
        free(w);
    }
    c->jw_head = NULL;
    levelmap_fini(&c->js_waiting);
    free(c->js_hdr);
}

/* SUBACKs wait no longer for the retained stream. */
void
cluster_retained_loaded(struct cluster *c)
{
    if (c->loaded) return;
    c->loaded = true;
    if (c->load_ev) event_del(c->load_ev);
    if (c->ready) c->ready(c->ud);
}

/* An update from the retained stream: stored here, not routed. Its expiry counts from
 * when the stream stored it. */
void
cluster_take_retained(struct cluster *c, natsMsg *nm)
{
    long tlen = cluster_topic_of(c, natsMsg_GetSubject(nm), c->rprefix);
    if (tlen < 0) return cluster_bad_message(c, nm, "not a topic's subject");
    struct lq_header x;
    const char *why = cluster_parse_header(nm, &x);
    if (why) return cluster_bad_message(c, nm, why);
    jsMsgMetaData *meta = NULL;
    if (natsMsg_GetMetaData(&meta, nm) != NATS_OK)
        return cluster_bad_message(c, nm, "no stream metadata");
    uint64_t seq = meta->Sequence.Stream, pending = meta->NumPending;
    double stored = (double)meta->Timestamp / 1e9;
    jsMsgMetaData_Destroy(meta);
    if (cluster_shared_topic(c, c->topic_buf, (size_t)tlen)) {
        uint64_t expire_at = 0;
        bool expired = false;
        if (x.has_expiry) {
            double age = lq_wall_time() - stored;
            double left_ms = (double)x.expiry * 1000.0 - (age > 0 ? age * 1000.0 : 0);
            expired = left_ms < 1;
            expire_at = expired ? 0 : lq_now_ms() + (uint64_t)left_ms;
        }
        struct msg *m = cluster_msg_of(c, nm, &x, tlen, expired, expire_at); /* expired: a clear */
        if (!m) return cluster_bad_message(c, nm, "bad Lq-Msg properties");
        c->retained_in++;
        c->store_retained(m, c->ud);
        msg_unref(m);
    }
    uint64_t target = atomic_load(&c->js_target);
    if (target && (seq + 1 >= target || pending == 0)) cluster_retained_loaded(c);
}

void
cluster_load_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd, (void)what;
    struct cluster *c = arg;
    if (!c->loaded)
        lq_log(LQ_LOG_NOTICE,
               "cluster: the retained stream is not loaded after %d ms: "
               "SUBSCRIBEs get what this node has, the rest as it comes",
               LOAD_TIMEOUT_MS);
    cluster_retained_loaded(c);
}
