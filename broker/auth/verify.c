/* SPDX-License-Identifier: MIT
 *
 * verify: password checks on threads of their own. A check is slow on purpose
 * (PBKDF2, thousands of rounds: a millisecond or more), so on the event loop a flood
 * of CONNECTs with wrong passwords would stall every other client. The loop submits a
 * job; a thread runs pwfile_verify; the loop is woken through a pipe and calls each
 * finished job's done(). The queue is bounded: past it the caller refuses the client
 * as busy, and the CONNECT timeout bounds how long any client waits in it. */
#include <fcntl.h>
#include <pthread.h>
#include <stdlib.h>
#include <unistd.h>

#include <event2/event.h>

#include "auth_verify.h"
#include "lq.h"

#define MAX_THREADS 4

struct verifier {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    struct verify_job *todo, **todo_tail; /* submitted, not started */
    struct verify_job *done, **done_tail; /* finished, for the loop */
    size_t pending;                       /* submitted, done() not yet called */
    size_t max_pending;
    bool stop;
    pthread_t threads[MAX_THREADS];
    unsigned nthreads;
    int pipe[2]; /* threads -> loop: "jobs are done" */
    struct event *done_ev;
    uint64_t checks;
};

static void
push_done(struct verifier *v, struct verify_job *j)
{
    j->next = NULL;
    bool was_empty = !v->done;
    *v->done_tail = j;
    v->done_tail = &j->next;
    if (was_empty) {
        ssize_t r = write(v->pipe[1], "", 1); /* a full pipe already says it */
        (void)r;
    }
}

static void *
thread_main(void *arg)
{
    struct verifier *v = arg;
    pthread_mutex_lock(&v->mu);
    for (;;) {
        while (!v->todo && !v->stop) pthread_cond_wait(&v->cv, &v->mu);
        if (!v->todo) break;
        struct verify_job *j = v->todo;
        v->todo = j->next;
        if (!v->todo) v->todo_tail = &v->todo;
        bool skip = j->cancelled;
        pthread_mutex_unlock(&v->mu);
        if (!skip) j->ok = pwfile_verify(j->file, j->user, j->ulen, j->password, j->len);
        pthread_mutex_lock(&v->mu);
        v->checks += !skip;
        push_done(v, j);
    }
    pthread_mutex_unlock(&v->mu);
    return NULL;
}

static void
finish(struct verifier *v)
{
    pthread_mutex_lock(&v->mu);
    struct verify_job *list = v->done;
    v->done = NULL;
    v->done_tail = &v->done;
    pthread_mutex_unlock(&v->mu);
    while (list) {
        struct verify_job *j = list;
        list = j->next;
        v->pending--;
        j->done(j);
    }
}

static void
done_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)what;
    char buf[64];
    while (read(fd, buf, sizeof(buf)) > 0) continue;
    finish(arg);
}

struct verifier *
verifier_new(struct event_base *base, size_t max_pending)
{
    struct verifier *v = lq_xcalloc(1, sizeof(*v));
    v->todo_tail = &v->todo;
    v->done_tail = &v->done;
    v->max_pending = max_pending;
    if (pipe(v->pipe) < 0) {
        free(v);
        return NULL;
    }
    for (int i = 0; i < 2; i++) {
        fcntl(v->pipe[i], F_SETFL, O_NONBLOCK);
        fcntl(v->pipe[i], F_SETFD, FD_CLOEXEC);
    }
    pthread_mutex_init(&v->mu, NULL);
    pthread_cond_init(&v->cv, NULL);
    v->done_ev = event_new(base, v->pipe[0], EV_READ | EV_PERSIST, done_cb, v);
    event_add(v->done_ev, NULL);
    /* one core stays the loop's */
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    unsigned want = cpus > 2 ? (unsigned)(cpus - 1) : 1;
    if (want > MAX_THREADS) want = MAX_THREADS;
    for (unsigned i = 0; i < want; i++)
        if (pthread_create(&v->threads[v->nthreads], NULL, thread_main, v) == 0) v->nthreads++;
    if (!v->nthreads) {
        verifier_free(v);
        return NULL;
    }
    return v;
}

bool
verifier_submit(struct verifier *v, struct verify_job *j)
{
    if (v->pending >= v->max_pending) return false;
    j->cancelled = false;
    j->ok = false;
    j->next = NULL;
    v->pending++;
    pthread_mutex_lock(&v->mu);
    *v->todo_tail = j;
    v->todo_tail = &j->next;
    pthread_cond_signal(&v->cv);
    pthread_mutex_unlock(&v->mu);
    return true;
}

void
verifier_cancel(struct verifier *v, struct verify_job *j)
{
    pthread_mutex_lock(&v->mu);
    j->cancelled = true;
    pthread_mutex_unlock(&v->mu);
}

size_t
verifier_pending(const struct verifier *v)
{
    return v ? v->pending : 0;
}

void
verifier_free(struct verifier *v)
{
    if (!v) return;
    pthread_mutex_lock(&v->mu);
    v->stop = true;
    for (struct verify_job *j = v->todo; j; j = j->next) j->cancelled = true;
    pthread_cond_broadcast(&v->cv);
    pthread_mutex_unlock(&v->mu);
    for (unsigned i = 0; i < v->nthreads; i++) pthread_join(v->threads[i], NULL);
    finish(v); /* every job: its owner frees it */
    if (v->done_ev) event_free(v->done_ev);
    close(v->pipe[0]);
    close(v->pipe[1]);
    pthread_mutex_destroy(&v->mu);
    pthread_cond_destroy(&v->cv);
    free(v);
}
