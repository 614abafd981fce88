/* SPDX-License-Identifier: MIT
 *
 * cluster groups: shared subscriptions across nodes. The members of $share/G/F on
 * every node take turns: each node with members queue-subscribes F's subjects in one
 * NATS queue group named after (G, F) (the same name on every node), on a second NATS
 * connection made with the first group, which hears this node's own messages too; NATS
 * gives each message to one node of the group, and that node to one member. */
#include <stdlib.h>
#include <string.h>

#include <mbedtls/sha256.h>
#include <nats/nats.h>

#include "cluster_int.h"
#include "topic.h"

void
cluster_qgroup_release(struct qgroup *q)
{
    if (atomic_fetch_sub(&q->refs, 1) != 1) return;
    for (int i = 0; i < q->nsubjects; i++) free(q->subject[i]);
    free(q);
}

/* libnats: a queue subscription's last message was handed over. */
static void
on_qsub_complete(void *closure)
{
    cluster_qgroup_release(closure);
}

static void
on_qmsg(natsConnection *nc, natsSubscription *sub, natsMsg *msg, void *closure)
{
    (void)nc, (void)sub;
    struct qgroup *q = closure;
    cluster_inbox_put(q->c, msg, q, true);
}

/* The queue connection, made with the first shared group. */
static natsConnection *
queue_connection(struct cluster *c)
{
    if (c->nq || !c->qopts) return c->nq;
    natsStatus s = natsConnection_Connect(&c->nq, c->qopts);
    if (s != NATS_OK && s != NATS_NOT_YET_CONNECTED) {
        lq_log(LQ_LOG_ERR, "cluster: cannot use NATS at %s for shared subscriptions: %s",
               c->nats_url, natsStatus_GetText(s));
        c->nq = NULL;
    }
    return c->nq;
}

void
cluster_queue_subscribe(struct cluster *c, struct qgroup *q)
{
    natsConnection *nq = queue_connection(c);
    for (int i = 0; nq && i < q->nsubjects; i++) {
        atomic_fetch_add(&q->refs, 1); /* the subscription's, till on_qsub_complete */
        if (natsConnection_QueueSubscribe(&q->sub[i], nq, q->subject[i], q->queue, on_qmsg, q) !=
                NATS_OK ||
            natsSubscription_SetOnCompleteCB(q->sub[i], on_qsub_complete, q) != NATS_OK) {
            if (q->sub[i]) { /* no callback set: nothing will release it */
                natsSubscription_Unsubscribe(q->sub[i]);
                natsSubscription_Destroy(q->sub[i]);
                q->sub[i] = NULL;
            }
            atomic_fetch_sub(&q->refs, 1);
        }
    }
}

void
cluster_queue_unsubscribe(struct qgroup *q)
{
    for (int i = 0; i < q->nsubjects; i++) {
        if (!q->sub[i]) continue;
        natsSubscription_Unsubscribe(q->sub[i]); /* on_qsub_complete follows */
        natsSubscription_Destroy(q->sub[i]);
        q->sub[i] = NULL;
    }
}

/* The NATS queue group of (group, filter): the same name on every node. */
static void
queue_name(const char *key, size_t klen, char out[34])
{
    uint8_t h[32];
    mbedtls_sha256((const unsigned char *)key, klen, h, 0);
    out[0] = 'q';
    cluster_hex_of(h, 16, out + 1);
}

void
cluster_interest_shared(struct cluster *c, const char *group, size_t glen, const char *filter,
                        size_t flen, int delta)
{
    if (!c || topic_is_sys(filter, flen)) return;
    size_t klen = glen + 1 + flen;
    char *key = c->topic_buf; /* group NUL filter: the table's key */
    if (klen > 65536) return; /* a filter of 65535 bytes has no room for a group */
    memcpy(key, group, glen);
    key[glen] = '\0';
    memcpy(key + glen + 1, filter, flen);
    struct qgroup *q = levelmap_get(&c->qgroups, key, klen);
    if (delta > 0) {
        if (!q) {
            int n = cluster_subjects_of_filter(c->prefix, filter, flen, c->filter_buf, SUBJECT_MAX);
            if (n <= 0) return;
            q = lq_xcalloc(1, sizeof(*q) + klen + 1);
            q->c = c;
            atomic_init(&q->refs, 2); /* the table's and the op's */
            memcpy(q->key, key, klen);
            q->glen = glen;
            q->flen = flen;
            queue_name(key, klen, q->queue);
            q->nsubjects = n;
            for (int i = 0; i < n; i++) q->subject[i] = lq_xstrdup(c->filter_buf[i]);
            levelmap_put(&c->qgroups, key, klen, q);
            struct op *op = lq_xcalloc(1, sizeof(*op));
            op->kind = OP_QSUB;
            op->qg = q;
            op->sub_no = ++c->subs_queued;
            cluster_queue_op(c, op);
        }
        q->members++;
        return;
    }
    if (!q || --q->members) return;
    levelmap_del(&c->qgroups, key, klen);
    struct op *op = lq_xcalloc(1, sizeof(*op));
    op->kind = OP_QUNSUB;
    op->qg = q; /* with the table's reference */
    cluster_queue_op(c, op);
}
