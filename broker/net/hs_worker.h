/* SPDX-License-Identifier: MIT
 * Shared by the files of net/ only: the TLS handshake thread (hs_worker.c). */
#ifndef LUNAMQ_HS_WORKER_H
#define LUNAMQ_HS_WORKER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "tls.h"

struct event_base;
struct evbuffer;

/* One step of a handshake: tls_conn_input(tls, plain) on the worker thread. */
struct hs_job {
    struct tls_conn *tls;
    struct evbuffer *plain; /* decrypted application data, once established */
    struct evbuffer *tx;    /* what the handshake wrote */
    void *owner;            /* the conn */
    bool first;             /* the handshake's first step (its ClientHello) */
    bool orphan;            /* the conn was freed meanwhile (set under the worker's lock) */
    uint32_t work_us;       /* how long the step took, start to end (set by the thread) */
    enum tls_status status;
    char why[320];
    struct hs_job *next;
};

/* Start the thread (once); finish runs in the loop for every job that is done. */
bool hs_worker_start(struct event_base *base, void (*finish)(struct hs_job *));
/* Steps of handshakes under way go before first steps, which go in arrival order:
 * work already paid for finishes before new work starts. */
void hs_worker_submit(struct hs_job *j);
/* A handshake ended (done or failed) after work_us of steps on the threads. */
void hs_worker_note_handshake(uint32_t work_us);
/* How many full handshakes the threads finish within ms (measured, at least 16). */
size_t hs_worker_capacity(uint32_t ms);
/* The job's connection was freed: a step not yet started is skipped; finish frees it. */
void hs_worker_orphan(struct hs_job *j);
/* Runs what is queued, joins the thread and finishes every job (at shutdown). */
void hs_worker_stop(void);

#endif
