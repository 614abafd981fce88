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
 * ticket sealing keys under their own mutex in tls_tickets.c).
 *
 * In a reconnect storm handshakes arrive faster than the threads finish them. The
 * queue serves the steps of handshakes under way first (a TLS 1.3 full handshake is
 * two steps: the ClientHello, then the client's certificate and Finished) and first
 * steps in arrival order, so that started handshakes finish instead of all of them
 * missing their deadline together; and it measures how long a handshake takes, so
 * that the listener admits only as many as the threads can finish in time
 * (listener.c, listener_admission). */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>

#include "hs_worker.h"
#include "lq.h"
#include "tls.h"

#define MAX_THREADS    4
#define HS_NICE        5    /* CFS weight 335 against the loop thread's 1024 */
#define FIRST_GUESS_US 4000 /* a full handshake before one was measured (portable bignum) */

static struct {
    bool started;
    pthread_t thread[MAX_THREADS];
    int nthreads;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    struct hs_job *cont, **cont_tail; /* FIFO: steps of handshakes under way */
    struct hs_job *todo, **todo_tail; /* FIFO: first steps */
    struct hs_job *done;              /* LIFO, order does not matter */
    bool stop;
    int pipe[2]; /* worker -> loop: "jobs are done" */
    struct event *done_ev;
    void (*finish)(struct hs_job *);
    uint32_t hs_us; /* a full handshake's work, moving average (loop thread only) */
} w = {.mu = PTHREAD_MUTEX_INITIALIZER, .cv = PTHREAD_COND_INITIALIZER};

static uint64_t
now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

/* The next job: a step of a handshake under way, else the oldest first step. */
static struct hs_job *
take(void)
{
    struct hs_job *j = w.cont;
    if (j) {
        if (!(w.cont = j->next)) w.cont_tail = &w.cont;
    } else if ((j = w.todo)) {
        if (!(w.todo = j->next)) w.todo_tail = &w.todo;
    }
    return j;
}

static void *
run(void *arg)
{
    (void)arg;
    /* Below the loop thread (Linux: a thread's own nice value): established clients'
     * messages go first when a storm of handshakes keeps every core busy. */
    if (setpriority(PRIO_PROCESS, (id_t)syscall(SYS_gettid), HS_NICE) < 0) (void)errno;
    pthread_mutex_lock(&w.mu);
    for (;;) {
        while (!w.cont && !w.todo && !w.stop) pthread_cond_wait(&w.cv, &w.mu);
        struct hs_job *j = take();
        if (!j) break;         /* stopping, nothing left */
        bool skip = j->orphan; /* its connection went while it waited: no work for it */
        pthread_mutex_unlock(&w.mu);
        if (!skip) {
            uint64_t t0 = now_us();
            j->status = tls_conn_input(j->tls, j->plain, j->why, sizeof(j->why));
            uint64_t dt = now_us() - t0;
            j->work_us = dt > UINT32_MAX ? UINT32_MAX : (uint32_t)dt;
        }
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

static int
threads_wanted(void)
{
    long cores = sysconf(_SC_NPROCESSORS_ONLN);
    return cores < 1 ? 1 : cores > MAX_THREADS ? MAX_THREADS : (int)cores;
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
    w.cont_tail = &w.cont;
    w.finish = finish;
    w.stop = false;
    int want = threads_wanted();
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
    if (j->first) {
        *w.todo_tail = j;
        w.todo_tail = &j->next;
    } else {
        *w.cont_tail = j;
        w.cont_tail = &j->next;
    }
    pthread_cond_signal(&w.cv);
    pthread_mutex_unlock(&w.mu);
}

void
hs_worker_note_handshake(uint32_t work_us)
{
    if (!work_us) return; /* done in the loop (no thread), or nothing measured */
    /* 1/16 of each new handshake: follows a change of load within a few hundred */
    w.hs_us = w.hs_us ? w.hs_us - w.hs_us / 16 + work_us / 16 : work_us;
}

size_t
hs_worker_capacity(uint32_t ms)
{
    uint64_t per = w.hs_us ? w.hs_us : FIRST_GUESS_US;
    int threads = w.started ? w.nthreads : threads_wanted();
    uint64_t n = (uint64_t)ms * 1000u * (uint64_t)threads / per;
    return n < 16 ? 16 : (size_t)n;
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
