/* SPDX-License-Identifier: MIT
 *
 * cluster internals: the MQTT topic <-> NATS subject mapping (subject.c). */
#ifndef LUNAMQ_CLUSTER_INT_H
#define LUNAMQ_CLUSTER_INT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <nats/nats.h>

#include "cluster.h"

/* Each MQTT topic level becomes one NATS token, so that '+' is '*' and '#' is '>'.
 * What a token cannot carry or NATS would misread is written %XX (two upper-case hex
 * digits): '.', '*', '>', '%', bytes below 0x21 and 0x7f, and a '$' that begins a
 * level; an empty level is the token "%-". The mapping is reversible: no header needs
 * to carry the exact topic. */

/* prefix (a valid subject, e.g. "lq.c1.m") + '.' + the tokens of topic, NUL-ended
 * into out. The length written (without the NUL), or 0 when out (cap bytes) is too
 * small; strlen(prefix) + 3 * tlen + 4 always suffices ("/" is "%-.%-"). */
size_t cluster_subject_of_topic(const char *prefix, const char *topic, size_t tlen, char *out,
                                size_t cap);

/* The tokens after the prefix and its '.' back to the topic, into out (not
 * NUL-ended). The topic's length, or -1 when they are not a mapped topic or out is
 * too small (len bytes always suffice). Only the spelling the mapping writes is
 * taken, so that one topic is one subject: not a short or lower-case escape ("%2e"),
 * an escape of a byte written as itself ("%41"), a raw byte that is escaped (a
 * wildcard token "*" or ">", a space, a leading '$'), '/', '+' or '#', nor an empty
 * token. The topic's UTF-8 (U+0000 is "%00") is the caller's to check. */
long cluster_topic_of_subject(const char *tokens, size_t len, char *out, size_t cap);

/* A topic filter (no $share/ prefix) as the NATS subjects that match what it
 * matches: one, or two for a filter ending in "/#", which also matches its parent
 * ("a/#" matches "a": "P.a" and "P.a.>"). Each NUL-ended in out[i] (cap bytes each).
 * The number of subjects, or 0 when out is too small (the bound of a topic of flen
 * bytes suffices). Topics that begin with '$' are matched by the subjects of
 * wildcard-first filters too (NATS knows no such rule): the receiving node's own
 * routing leaves them out. */
int cluster_subjects_of_filter(const char *prefix, const char *filter, size_t flen, char *out[2],
                               size_t cap);

/* sessions.c: the owners of client ids and sessions moving between nodes. Made with
 * the cluster, started by its thread (its own NATS connection, with opts), stopped
 * before the cluster's connections close. */
struct event_base;
struct csessions;
struct csessions *csessions_new(struct event_base *base, const char *cluster, const char *node_id,
                                const char *run, uint32_t takeover_ms, int replicas,
                                cluster_takeover_fn takeover, void *ud);
void csessions_start(struct csessions *ss, natsOptions *opts);
void csessions_stop(struct csessions *ss);
void csessions_free(struct csessions *ss);
void csessions_stats(const struct csessions *ss, struct cluster_stats *out);
struct cluster_claim *csessions_claim(struct csessions *ss, const char *id, size_t idlen,
                                      bool clean, cluster_claim_fn done, void *arg);

#endif
