/* SPDX-License-Identifier: MIT
 *
 * cluster sessions: which node owns each client id, and moving a session between
 * nodes (cluster.h says what the session layer sees).
 *
 * The owner of a client id is recorded in a JetStream key-value bucket,
 * LQ_<cluster>_SESSIONS: key "c" + SHA-256 of the id in hex (ids are any UTF-8, keys
 * are not), value "NODE RUN". A CONNECT on node B looks its id up (a claim):
 *  - no record, or B's own: the session is B's (the record is written if needed);
 *  - another node A's: B asks A on lq.<cluster>.s.A ("1 CLEAN 0 ID"); A closes the old
 *    connection and answers with the session ('S' and its state) or 'N' (none, or
 *    clean start). A keeps a session it handed over, queueing, until B has made its
 *    subscriptions: then B asks again ("2 0 ID", with the number of messages it got
 *    first: "2 0 N ID") for what was queued meanwhile and A ends it. Nothing is lost between the
 * two; a message can come twice (QoS 1).
 *  - A has no subscriber there (its NATS connection is gone: dead) or does not answer
 *    within cluster_takeover_timeout: B takes the session over clean.
 * NATS down or JetStream unreachable: the claim says so (cluster_partition decides).
 * A NATS server without JetStream: sessions stay each node's own (logged once).
 *
 * WORKERS threads here make these round trips, each on a NATS connection of its own;
 * a client id's claims always go to the same one, in order, and a slow owner delays
 * only the claims behind it there, never the event loop or the messages. Answers come
 * back to the loop through a pipe. */
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/event.h>
#include <mbedtls/sha256.h>
#include <nats/nats.h>

#include "cluster.h"
#include "cluster_int.h"
#include "lq.h"
#include "sbuf.h"

#define WORKERS              4    /* claims made side by side (round trips: mostly waiting) */
#define SESSIONS_REOPEN_MS   1000 /* between attempts to make this thread's connection */
#define SESSIONS_JS_WAIT_MS  1000 /* a JetStream request (the bucket, a record) */
#define SESSIONS_JS_RETRY_MS 5000 /* JetStream did not answer: claims meanwhile are partitions */

enum sop_kind { SOP_CLAIM, SOP_RELEASE, SOP_REPLY };

/* Work for the thread: a claim's step, or an answer to another node's request. */
struct sop {
    struct sop *next;
    enum sop_kind kind;
    struct cluster_claim *cl; /* SOP_CLAIM, SOP_RELEASE */
    natsMsg *req;             /* SOP_REPLY: the request answered */
    size_t len;
    uint8_t data[]; /* SOP_REPLY */
};

struct cluster_claim {
    struct csessions *ss;
    cluster_claim_fn done; /* NULL: abandoned (the connection went): freed when back */
    void *arg;
    bool clean, busy;
    int worker;    /* the one its claims go to: by its id */
    uint32_t skip; /* the release: messages the first answer had */
    enum cluster_claim_result result;
    char owner[64]; /* the node it was taken from, for the release */
    uint8_t *state; /* from the owner: 'S' then the session's state */
    size_t nstate;
    struct cluster_claim *next_done;
    size_t idlen;
    char id[];
};

/* Another node's request, for the loop. */
struct take_req {
    struct take_req *next;
    natsMsg *m;
};

/* One worker thread: its connection (its own: the cluster thread may replace its),
 * its view of the bucket, its queue. */
struct sworker {
    struct csessions *ss;
    pthread_t thread;
    bool started;
    natsConnection *nc;
    natsSubscription *sub; /* worker 0's: the subject other nodes ask this one on */
    jsCtx *js;
    kvStore *kv;
    uint64_t next_attempt_ms, js_next_try_ms;
    struct lq_log_limit js_log;
    pthread_cond_t cv;
    struct sop *todo, **todo_tail; /* under ss->mu */
};

struct csessions {
    char *bucket, *node_id, *value, *subject_prefix;
    uint32_t takeover_ms;
    int replicas;
    cluster_takeover_fn takeover;
    void *ud;
    struct event *ev;
    int pipe[2];
    natsOptions *opts; /* the cluster's: single attempts (libnats reconnects after) */
    struct sworker w[WORKERS];
    _Atomic bool js_missing; /* the server has no JetStream: local sessions (logged) */
    /* mu guards the workers' queues, stop, back, reqs */
    pthread_mutex_t mu;
    bool stop;
    struct cluster_claim *back; /* answered claims, for the loop */
    struct take_req *reqs, **reqs_tail;
    _Atomic uint64_t claims, taken, gone, partitions, handed;
};

/* ---- the thread ---- */

static void
wake_loop(struct csessions *ss)
{
    (void)!write(ss->pipe[1], "", 1); /* full: the loop is awake anyway */
}

/* libnats: another node asks for one of our sessions. */
static void
on_take(natsConnection *nc, natsSubscription *sub, natsMsg *m, void *closure)
{
    (void)nc, (void)sub;
    struct csessions *ss = closure;
    struct take_req *r = lq_xcalloc(1, sizeof(*r));
    r->m = m;
    pthread_mutex_lock(&ss->mu);
    *ss->reqs_tail = r;
    ss->reqs_tail = &r->next;
    pthread_mutex_unlock(&ss->mu);
    wake_loop(ss);
}

static void
key_of(const char *id, size_t idlen, char out[66])
{
    static const char digits[] = "0123456789abcdef";
    uint8_t h[32];
    mbedtls_sha256((const unsigned char *)id, idlen, h, 0);
    out[0] = 'c';
    for (int i = 0; i < 32; i++) {
        out[1 + 2 * i] = digits[h[i] >> 4];
        out[2 + 2 * i] = digits[h[i] & 15];
    }
    out[65] = '\0';
}

/* The bucket, made or found; false while JetStream cannot be reached. */
static bool
kv_ready(struct sworker *w)
{
    struct csessions *ss = w->ss;
    if (w->kv) return true;
    uint64_t now = lq_now_ms();
    if (atomic_load(&ss->js_missing) || now < w->js_next_try_ms) return false;
    jsOptions jo;
    jsOptions_Init(&jo);
    jo.Wait = SESSIONS_JS_WAIT_MS;
    natsStatus s = w->js ? NATS_OK : natsConnection_JetStream(&w->js, w->nc, &jo);
    if (s != NATS_OK) return false;
    kvConfig cfg;
    kvConfig_Init(&cfg);
    cfg.Bucket = ss->bucket;
    cfg.History = 1;
    cfg.Replicas = ss->replicas;
    s = js_CreateKeyValue(&w->kv, w->js, &cfg);
    if (s != NATS_OK) s = js_KeyValue(&w->kv, w->js, ss->bucket); /* made elsewhere */
    if (s == NATS_OK) return true;
    w->kv = NULL;
    const char *why = nats_GetLastError(NULL);
    if (s == NATS_NO_RESPONDERS || (why && strstr(why, "not enabled"))) {
        if (!atomic_exchange(&ss->js_missing, true)) /* logged by the first to see it */
            lq_log(LQ_LOG_WARNING,
                   "cluster: no JetStream on the NATS server: sessions stay on the node they "
                   "began on (start nats-server with -js for cluster_sessions jetstream)");
    } else { /* no answer in time: not again for a while, not at every CONNECT */
        w->js_next_try_ms = now + SESSIONS_JS_RETRY_MS;
        lq_log_limited(&w->js_log, LQ_LOG_WARNING,
                       "cluster: JetStream does not answer (%s): sessions are taken as "
                       "partitioned (cluster_partition) for %d s",
                       why ? why : natsStatus_GetText(s), SESSIONS_JS_RETRY_MS / 1000);
    }
    return false;
}

/* The reply of a request to the owner: its state, or none (its session ended). */
static void
take_answer(struct cluster_claim *cl, natsStatus s, natsMsg *reply)
{
    if (s == NATS_OK && natsMsg_GetDataLength(reply) > 0 && natsMsg_GetData(reply)[0] == 'S') {
        cl->nstate = (size_t)natsMsg_GetDataLength(reply) - 1;
        cl->state = lq_xmalloc(cl->nstate ? cl->nstate : 1);
        memcpy(cl->state, natsMsg_GetData(reply) + 1, cl->nstate);
        cl->result = CLAIM_TAKEN;
    } else {
        cl->result = CLAIM_GONE; /* no responder (dead), no answer in time, or no session */
    }
    natsMsg_Destroy(reply);
}

static natsStatus
ask_owner(struct sworker *w, struct cluster_claim *cl, char phase, natsMsg **reply)
{
    struct csessions *ss = w->ss;
    char subject[160];
    snprintf(subject, sizeof(subject), "%s.%s", ss->subject_prefix, cl->owner);
    char *req = lq_xmalloc(cl->idlen + 24);
    int h = snprintf(req, 24, "%c %c %u ", phase, cl->clean ? '1' : '0', cl->skip);
    memcpy(req + h, cl->id, cl->idlen);
    natsStatus s =
        natsConnection_Request(reply, w->nc, subject, req, h + (int)cl->idlen, ss->takeover_ms);
    free(req);
    return s;
}

/* The thread's connection, and on it the subject other nodes ask this one on; made
 * again when libnats gave it up (refused credentials, say). */
static void
keep_connected(struct sworker *w)
{
    struct csessions *ss = w->ss;
    if (w->nc && natsConnection_Status(w->nc) != NATS_CONN_STATUS_CLOSED) return;
    uint64_t now = lq_now_ms(); /* one attempt a second: a claim meanwhile is a partition */
    if (now < w->next_attempt_ms) return;
    w->next_attempt_ms = now + SESSIONS_REOPEN_MS;
    if (w->nc) {
        if (w->sub) natsSubscription_Destroy(w->sub);
        w->sub = NULL;
        if (w->kv) kvStore_Destroy(w->kv);
        if (w->js) jsCtx_Destroy(w->js);
        w->kv = NULL;
        w->js = NULL;
        natsConnection_Destroy(w->nc);
        w->nc = NULL;
    }
    if (natsConnection_Connect(&w->nc, ss->opts) != NATS_OK) {
        w->nc = NULL;
        return;
    }
    if (w != &ss->w[0]) return;
    char subject[160];
    snprintf(subject, sizeof(subject), "%s.%s", ss->subject_prefix, ss->node_id);
    if (natsConnection_Subscribe(&w->sub, w->nc, subject, on_take, ss) != NATS_OK) w->sub = NULL;
}

static void
claim(struct sworker *w, struct cluster_claim *cl)
{
    struct csessions *ss = w->ss;
    atomic_fetch_add(&ss->claims, 1);
    keep_connected(w);
    if (!w->nc || natsConnection_Status(w->nc) != NATS_CONN_STATUS_CONNECTED) {
        cl->result = CLAIM_PARTITION;
        return;
    }
    if (!kv_ready(w)) {
        cl->result = atomic_load(&ss->js_missing) ? CLAIM_LOCAL : CLAIM_PARTITION;
        return;
    }
    char key[66];
    key_of(cl->id, cl->idlen, key);
    kvEntry *e = NULL;
    natsStatus s = kvStore_Get(&e, w->kv, key);
    if (s != NATS_OK && s != NATS_NOT_FOUND) {
        cl->result = CLAIM_PARTITION;
        return;
    }
    const char *v = s == NATS_OK ? kvEntry_ValueString(e) : NULL;
    size_t nl = v ? strcspn(v, " ") : 0;
    bool ours = v && strcmp(v, ss->value) == 0;
    if (v && !(nl == strlen(ss->node_id) && strncmp(v, ss->node_id, nl) == 0) &&
        nl < sizeof(cl->owner)) {
        memcpy(cl->owner, v, nl); /* another node's */
        cl->owner[nl] = '\0';
    }
    kvEntry_Destroy(e);
    cl->result = CLAIM_LOCAL;
    if (cl->owner[0]) {
        natsMsg *reply = NULL;
        natsStatus st = ask_owner(w, cl, '1', &reply); /* before reply is read */
        take_answer(cl, st, reply);
        if (cl->result == CLAIM_TAKEN) atomic_fetch_add(&ss->taken, 1);
        if (cl->result == CLAIM_GONE) atomic_fetch_add(&ss->gone, 1);
    }
    if (!ours && kvStore_PutString(NULL, w->kv, key, ss->value) != NATS_OK)
        lq_log(LQ_LOG_WARNING, "cluster: cannot record the owner of a session: %s",
               nats_GetLastError(NULL));
}

static void
release(struct sworker *w, struct cluster_claim *cl)
{
    free(cl->state);
    cl->state = NULL;
    cl->nstate = 0;
    natsMsg *reply = NULL;
    natsStatus st = ask_owner(w, cl, '2', &reply); /* before reply is read */
    take_answer(cl, st, reply);
}

static void
run_sop(struct sworker *w, struct sop *op)
{
    struct csessions *ss = w->ss;
    switch (op->kind) {
    case SOP_CLAIM:
    case SOP_RELEASE:
        if (op->kind == SOP_CLAIM)
            claim(w, op->cl);
        else
            release(w, op->cl);
        if (op->cl->result == CLAIM_PARTITION) atomic_fetch_add(&ss->partitions, 1);
        pthread_mutex_lock(&ss->mu);
        op->cl->next_done = ss->back;
        ss->back = op->cl;
        pthread_mutex_unlock(&ss->mu);
        wake_loop(ss);
        break;
    case SOP_REPLY:
        if (w->nc && natsMsg_GetReply(op->req))
            natsConnection_Publish(w->nc, natsMsg_GetReply(op->req), op->data, (int)op->len);
        natsMsg_Destroy(op->req);
        break;
    }
    free(op);
}

static void *
thread_main(void *arg)
{
    struct sworker *w = arg;
    struct csessions *ss = w->ss;
    keep_connected(w);
    pthread_mutex_lock(&ss->mu);
    for (;;) {
        while (!w->todo && !ss->stop) pthread_cond_wait(&w->cv, &ss->mu);
        if (ss->stop) break; /* what is left is freed with ss */
        struct sop *op = w->todo;
        w->todo = op->next;
        if (!w->todo) w->todo_tail = &w->todo;
        pthread_mutex_unlock(&ss->mu);
        run_sop(w, op);
        pthread_mutex_lock(&ss->mu);
    }
    pthread_mutex_unlock(&ss->mu);
    if (w->sub) { /* no more requests, then the connection goes */
        natsSubscription_Unsubscribe(w->sub);
        natsSubscription_Destroy(w->sub);
        w->sub = NULL;
    }
    if (w->kv) kvStore_Destroy(w->kv);
    if (w->js) jsCtx_Destroy(w->js);
    w->kv = NULL;
    w->js = NULL;
    if (w->nc) {
        natsConnection_FlushTimeout(w->nc, 500); /* answers given, out */
        natsConnection_Close(w->nc);
        natsConnection_Destroy(w->nc);
        w->nc = NULL;
    }
    return NULL;
}

static void
submit(struct csessions *ss, int worker, struct sop *op)
{
    struct sworker *w = &ss->w[worker];
    op->next = NULL;
    pthread_mutex_lock(&ss->mu);
    *w->todo_tail = op;
    w->todo_tail = &op->next;
    pthread_cond_signal(&w->cv);
    pthread_mutex_unlock(&ss->mu);
}

/* ---- the loop ---- */

/* Another node's request: "PHASE CLEAN SKIP ID"; answered through the thread. */
static void
answer_take(struct csessions *ss, natsMsg *m)
{
    const char *d = natsMsg_GetData(m);
    size_t n = (size_t)natsMsg_GetDataLength(m);
    struct sbuf out = {0};
    sbuf_put(&out, "N", 1);
    const char *end = d + 4;
    uint64_t skip = 0;
    bool ok = n >= 6 && (d[0] == '1' || d[0] == '2') && d[1] == ' ' &&
              (d[2] == '0' || d[2] == '1') && d[3] == ' ';
    for (; ok && end < d + n && *end >= '0' && *end <= '9' && skip <= UINT32_MAX; end++)
        skip = skip * 10 + (uint64_t)(*end - '0');
    if (ok && end > d + 4 && end < d + n && *end == ' ' && skip <= UINT32_MAX) {
        const char *id = end + 1;
        out.len = 0;
        sbuf_put(&out, "S", 1);
        if (!ss->takeover(ss->ud, d[0] - '0', d[2] == '1', (uint32_t)skip, id, (size_t)(d + n - id),
                          &out)) {
            out.len = 0;
            sbuf_put(&out, "N", 1);
        } else {
            atomic_fetch_add(&ss->handed, d[0] == '1');
        }
    }
    struct sop *op = lq_xmalloc(sizeof(*op) + out.len);
    *op = (struct sop){.kind = SOP_REPLY, .req = m, .len = out.len};
    memcpy(op->data, out.p, out.len);
    sbuf_free(&out);
    submit(ss, 0, op);
}

static void
back_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)what;
    struct csessions *ss = arg;
    char drain[64];
    while (read(fd, drain, sizeof(drain)) > 0) {
    }
    pthread_mutex_lock(&ss->mu);
    struct cluster_claim *back = ss->back;
    struct take_req *reqs = ss->reqs;
    ss->back = NULL;
    ss->reqs = NULL;
    ss->reqs_tail = &ss->reqs;
    pthread_mutex_unlock(&ss->mu);
    for (struct take_req *r = reqs, *next; r; r = next) {
        next = r->next;
        answer_take(ss, r->m);
        free(r);
    }
    /* the list is newest first: answer in the order asked */
    struct cluster_claim *order = NULL;
    while (back) {
        struct cluster_claim *cl = back;
        back = cl->next_done;
        cl->next_done = order;
        order = cl;
    }
    while (order) {
        struct cluster_claim *cl = order;
        order = cl->next_done;
        cl->busy = false;
        if (cl->done)
            cl->done(cl, cl->arg);
        else
            cluster_claim_free(cl);
    }
}

struct csessions *
csessions_new(struct event_base *base, const char *cluster, const char *node_id, const char *run,
              uint32_t takeover_ms, int replicas, cluster_takeover_fn takeover, void *ud)
{
    struct csessions *ss = lq_xcalloc(1, sizeof(*ss));
    size_t n = strlen(cluster) + 32;
    ss->bucket = lq_xmalloc(n);
    snprintf(ss->bucket, n, "LQ_%s_SESSIONS", cluster);
    ss->subject_prefix = lq_xmalloc(n);
    snprintf(ss->subject_prefix, n, "lq.%s.s", cluster);
    ss->node_id = lq_xstrdup(node_id);
    n = strlen(node_id) + strlen(run) + 2;
    ss->value = lq_xmalloc(n);
    snprintf(ss->value, n, "%s %s", node_id, run);
    ss->takeover_ms = takeover_ms;
    ss->replicas = replicas > 0 ? replicas : 1;
    ss->takeover = takeover;
    ss->ud = ud;
    ss->reqs_tail = &ss->reqs;
    ss->pipe[0] = ss->pipe[1] = -1;
    pthread_mutex_init(&ss->mu, NULL);
    for (int i = 0; i < WORKERS; i++) {
        ss->w[i].ss = ss;
        ss->w[i].todo_tail = &ss->w[i].todo;
        pthread_cond_init(&ss->w[i].cv, NULL);
    }
    if (pipe(ss->pipe) < 0 || fcntl(ss->pipe[0], F_SETFL, O_NONBLOCK) < 0 ||
        fcntl(ss->pipe[1], F_SETFL, O_NONBLOCK) < 0 ||
        !(ss->ev = event_new(base, ss->pipe[0], EV_READ | EV_PERSIST, back_cb, ss)) ||
        event_add(ss->ev, NULL) < 0) {
        csessions_free(ss);
        return NULL;
    }
    return ss;
}

void
csessions_start(struct csessions *ss, natsOptions *opts)
{
    if (!ss || !opts || ss->opts) return;
    ss->opts = opts;
    for (int i = 0; i < WORKERS; i++)
        ss->w[i].started = pthread_create(&ss->w[i].thread, NULL, thread_main, &ss->w[i]) == 0;
}

void
csessions_stop(struct csessions *ss)
{
    if (!ss) return;
    pthread_mutex_lock(&ss->mu);
    ss->stop = true;
    for (int i = 0; i < WORKERS; i++) pthread_cond_signal(&ss->w[i].cv);
    pthread_mutex_unlock(&ss->mu);
    for (int i = 0; i < WORKERS; i++) {
        if (ss->w[i].started) pthread_join(ss->w[i].thread, NULL);
        ss->w[i].started = false;
    }
}

/* A claim no answer comes for: its connection's to free, or abandoned already. */
static void
claim_back(struct cluster_claim *cl)
{
    cl->busy = false;
    if (!cl->done) cluster_claim_free(cl);
}

void
csessions_free(struct csessions *ss)
{
    if (!ss) return;
    csessions_stop(ss);
    for (int i = 0; i < WORKERS; i++) {
        for (struct sop *op = ss->w[i].todo, *next; op; op = next) { /* never run */
            next = op->next;
            if (op->kind == SOP_REPLY)
                natsMsg_Destroy(op->req);
            else
                claim_back(op->cl);
            free(op);
        }
        pthread_cond_destroy(&ss->w[i].cv);
    }
    while (ss->back) {
        struct cluster_claim *cl = ss->back;
        ss->back = cl->next_done;
        claim_back(cl);
    }
    for (struct take_req *r = ss->reqs, *next; r; r = next) {
        next = r->next;
        natsMsg_Destroy(r->m);
        free(r);
    }
    if (ss->ev) event_free(ss->ev);
    if (ss->pipe[0] >= 0) close(ss->pipe[0]);
    if (ss->pipe[1] >= 0) close(ss->pipe[1]);
    pthread_mutex_destroy(&ss->mu);
    free(ss->bucket);
    free(ss->subject_prefix);
    free(ss->node_id);
    free(ss->value);
    free(ss);
}

void
csessions_stats(const struct csessions *ss, struct cluster_stats *out)
{
    if (!ss) return;
    out->claims = atomic_load(&ss->claims);
    out->takeovers_in = atomic_load(&ss->taken);
    out->takeovers_clean = atomic_load(&ss->gone);
    out->takeovers_out = atomic_load(&ss->handed);
    out->partitions = atomic_load(&ss->partitions);
}

/* ---- claims (cluster.h) ---- */

struct cluster_claim *
csessions_claim(struct csessions *ss, const char *id, size_t idlen, bool clean,
                cluster_claim_fn done, void *arg)
{
    struct cluster_claim *cl = lq_xcalloc(1, sizeof(*cl) + idlen + 1);
    cl->ss = ss;
    cl->done = done;
    cl->arg = arg;
    cl->clean = clean;
    cl->busy = true;
    cl->idlen = idlen;
    memcpy(cl->id, id, idlen);
    uint32_t h = 2166136261u; /* FNV-1a: one id, one worker, its claims in order */
    for (size_t i = 0; i < idlen; i++) h = (h ^ (uint8_t)id[i]) * 16777619u;
    cl->worker = (int)(h % WORKERS);
    struct sop *op = lq_xcalloc(1, sizeof(*op));
    op->kind = SOP_CLAIM;
    op->cl = cl;
    submit(ss, cl->worker, op);
    return cl;
}

enum cluster_claim_result
cluster_claim_result(const struct cluster_claim *cl)
{
    return cl->result;
}

const uint8_t *
cluster_claim_state(const struct cluster_claim *cl, size_t *n)
{
    *n = cl->nstate;
    return cl->state;
}

bool
cluster_claim_release(struct cluster_claim *cl, uint32_t skip, cluster_claim_fn done, void *arg)
{
    if (!cl->owner[0] || cl->result != CLAIM_TAKEN) return false;
    cl->skip = skip;
    cl->done = done;
    cl->arg = arg;
    cl->busy = true;
    struct sop *op = lq_xcalloc(1, sizeof(*op));
    op->kind = SOP_RELEASE;
    op->cl = cl;
    submit(cl->ss, cl->worker, op);
    return true;
}

void
cluster_claim_free(struct cluster_claim *cl)
{
    if (!cl) return;
    if (cl->busy) { /* with the thread: freed when it comes back */
        cl->done = NULL;
        return;
    }
    free(cl->state);
    free(cl);
}
