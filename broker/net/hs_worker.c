/* SPDX-License-Identifier: MIT
 *
 * hs_worker: full TLS handshakes on a thread of their own. A handshake is a few
 * milliseconds of public-key arithmetic (mbedTLS's portable bignum code: X25519, an
 * ECDSA signature, two verifications); done in the event loop it stalls every other
 * connection, done here it uses the second core. The loop hands over a connection's
 * TLS state with a job and does not touch it (nor its input buffer) until the job
 * comes back; the handshake's output goes to the job's own buffer meanwhile. One
 * thread per core (at most MAX_THREADS): what handshakes share locks itself (the
 * random generator, PSA, mbedTLS's ticket keys under MBEDTLS_THREADING_C; our
 * ticket sealing key under its own mutex in tls.c). */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/event.h>

#include "hs_worker.h"
#include "lq.h"
#include "tls.h"

#define MAX_THREADS 4

static struct {
    bool started;
    pthread_t thread[MAX_THREADS];
    int nthreads;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    struct hs_job *todo, **todo_tail; /* FIFO */
    struct hs_job *done;              /* LIFO, order does not matter */
    bool stop;
    int pipe[2]; /* worker -> loop: "jobs are done" */
    struct event *done_ev;
    void (*finish)(struct hs_job *);
} w = {.mu = PTHREAD_MUTEX_INITIALIZER, .cv = PTHREAD_COND_INITIALIZER};

static void *
run(void *arg)
{
    (void)arg;
    pthread_mutex_lock(&w.mu);
    for (;;) {
        while (!w.todo && !w.stop) pthread_cond_wait(&w.cv, &w.mu);
        if (!w.todo) break; /* stopping, nothing left */
        struct hs_job *j = w.todo;
        w.todo = j->next;
        if (!w.todo) w.todo_tail = &w.todo;
        bool skip = j->orphan; /* its connection went while it waited: no work for it */
        pthread_mutex_unlock(&w.mu);
        if (!skip) j->status = tls_conn_input(j->tls, j->plain, j->why, sizeof(j->why));
        pthread_mutex_lock(&w.mu);
        j->next = w.done;
        w.done = j;
        ssize_t r = write(w.pipe[1], "", 1); /* a full pipe already says it */
        (void)r;
    }
    pthread_mutex_unlock(&w.mu);
    return NULL;
}

static void
collect(void)
{
    pthread_mutex_lock(&w.mu);
    struct hs_job *j = w.done;
    w.done = NULL;
    pthread_mutex_unlock(&w.mu);
    while (j) {
        struct hs_job *next = j->next;
        w.finish(j);
        j = next;
    }
}

static void
done_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)what;
    (void)arg;
    char buf[256];
    while (read(fd, buf, sizeof(buf)) > 0) continue;
    collect();
}

bool
hs_worker_start(struct event_base *base, void (*finish)(struct hs_job *))
{
    if (w.started) return true;
    if (pipe(w.pipe) < 0) return false;
    for (int i = 0; i < 2; i++) {
        fcntl(w.pipe[i], F_SETFL, O_NONBLOCK);
        fcntl(w.pipe[i], F_SETFD, FD_CLOEXEC);
    }
    w.done_ev = event_new(base, w.pipe[0], EV_READ | EV_PERSIST, done_cb, NULL);
    w.todo_tail = &w.todo;
    w.finish = finish;
    w.stop = false;
    long cores = sysconf(_SC_NPROCESSORS_ONLN);
    int want = cores < 1 ? 1 : cores > MAX_THREADS ? MAX_THREADS : (int)cores;
    w.nthreads = 0;
    if (w.done_ev && event_add(w.done_ev, NULL) == 0)
        while (w.nthreads < want && pthread_create(&w.thread[w.nthreads], NULL, run, NULL) == 0)
            w.nthreads++;
    if (!w.nthreads) {
        if (w.done_ev) event_free(w.done_ev);
        close(w.pipe[0]);
        close(w.pipe[1]);
        return false;
    }
    w.started = true;
    return true;
}

void
hs_worker_submit(struct hs_job *j)
{
    pthread_mutex_lock(&w.mu);
    j->next = NULL;
    *w.todo_tail = j;
    w.todo_tail = &j->next;
    pthread_cond_signal(&w.cv);
    pthread_mutex_unlock(&w.mu);
}

void
hs_worker_orphan(struct hs_job *j)
{
    pthread_mutex_lock(&w.mu);
    j->orphan = true;
    pthread_mutex_unlock(&w.mu);
}

void
hs_worker_stop(void)
{
    if (!w.started) return;
    pthread_mutex_lock(&w.mu);
    w.stop = true; /* what is queued still runs: its connections wait for it */
    pthread_cond_broadcast(&w.cv);
    pthread_mutex_unlock(&w.mu);
    for (int i = 0; i < w.nthreads; i++) pthread_join(w.thread[i], NULL);
    collect();
    event_free(w.done_ev);
    close(w.pipe[0]);
    close(w.pipe[1]);
    w.started = false;
}
