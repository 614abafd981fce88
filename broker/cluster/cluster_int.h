/* SPDX-License-Identifier: MIT
 *
 * cluster internals: the MQTT topic <-> NATS subject mapping (subject.c). */
#ifndef LUNAMQ_CLUSTER_INT_H
#define LUNAMQ_CLUSTER_INT_H

#include <stdbool.h>
#include <stddef.h>

/* Each MQTT topic level becomes one NATS token, so that '+' is '*' and '#' is '>'.
 * What a token cannot carry or NATS would misread is written %XX (two upper-case hex
 * digits): '.', '*', '>', '%', bytes below 0x21 and 0x7f, and a '$' that begins a
 * level; an empty level is the token "%-". The mapping is reversible: no header needs
 * to carry the exact topic. */

/* prefix (a valid subject, e.g. "lq.c1.m") + '.' + the tokens of topic, NUL-ended
 * into out. The length written, or 0 when out (cap bytes) is too small. */
size_t cluster_subject_of_topic(const char *prefix, const char *topic, size_t tlen, char *out,
                                size_t cap);

/* The tokens after the prefix and its '.' back to the topic, into out (not
 * NUL-ended). The topic's length, or -1 when they are not a mapped topic (a bad
 * escape, an empty token, a wildcard token) or out is too small. */
long cluster_topic_of_subject(const char *tokens, size_t len, char *out, size_t cap);

/* A topic filter (no $share/ prefix) as the NATS subjects that match what it
 * matches: one, or two for a filter ending in "/#", which also matches its parent
 * ("a/#" matches "a": "P.a" and "P.a.>"). Each NUL-ended in out[i] (cap bytes each).
 * The number of subjects, or 0 when out is too small. Topics that begin with '$'
 * are matched by the subjects of wildcard-first filters too (NATS knows no such
 * rule): the receiving node's own routing leaves them out. */
int cluster_subjects_of_filter(const char *prefix, const char *filter, size_t flen, char *out[2],
                               size_t cap);

#endif
