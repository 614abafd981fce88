/* SPDX-License-Identifier: MIT
 *
 * store: the loop thread's side of the journal. Owns the directory and its lock, the
 * open batch records are encoded into, the hand-off of that batch to the writer
 * thread (once per event-loop iteration, through an event_active'd event: one lock
 * per iteration, not per record), the wake-up from the writer (a pipe) that turns
 * into on_durable / on_snapshot_done, the loop's half of a snapshot, stats and close.
 * The disk itself is the writer's (writer.c, snapshot.c); recovery is recover.c. */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/file.h>
#include <sys/stat.h>

#include <event2/event.h>

#include "lq.h"
#include "store_int.h"

#define SNAP_HANDOFF_BYTES (1u << 20) /* snapshot frames go to the writer in ~1 MiB slices */
#define CLOSE_WAIT_MS      5000

struct log_line {
    struct log_line *next;
    unsigned level;
    char msg[];
};

/* ---- crash points (tests) ---- */
static const char *crash_at;
static pthread_once_t crash_once = PTHREAD_ONCE_INIT;

static void
crash_init(void)
{
    crash_at = getenv("LUNAMQ_CRASH_AT");
}

void
store_crash_point(const char *name)
{
    pthread_once(&crash_once, crash_init);
    if (crash_at && strcmp(crash_at, name) == 0) {
        fprintf(stderr, "lunamq: LUNAMQ_CRASH_AT=%s: aborting here\n", name);
        abort();
    }
}

/* ---- names ---- */
void
store_segment_name(char *out, size_t n, uint64_t first)
{
    snprintf(out, n, "journal-%020" PRIu64 ".log", first);
}

void
store_snapshot_name(char *out, size_t n, uint64_t seq, const char *ext)
{
    snprintf(out, n, "snapshot-%020" PRIu64 ".%s", seq, ext);
}

int
store_fsync_dir(struct store *st)
{
    return fsync(st->dirfd);
}

/* ---- writer -> loop ---- */
void
store_defer_log(struct store *st, unsigned level, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    struct log_line *l = lq_xmalloc(sizeof(*l) + strlen(msg) + 1);
    l->level = level;
    strcpy(l->msg, msg);
    pthread_mutex_lock(&st->mu);
    l->next = st->log_lines; /* newest first; reversed when logged */
    st->log_lines = l;
    pthread_mutex_unlock(&st->mu);
}

void
store_notify_loop(struct store *st)
{
    if (atomic_exchange(&st->notify_pending, true)) return; /* the loop has not looked yet */
    ssize_t r = write(st->pipe[1], "", 1);                  /* a full pipe already says it */
    (void)r;
}

/* The writer's log lines go out on the loop thread: the log sink is the loop's. */
static void
log_deferred(struct store *st)
{
    pthread_mutex_lock(&st->mu);
    struct log_line *l = st->log_lines, *rev = NULL;
    st->log_lines = NULL;
    pthread_mutex_unlock(&st->mu);
    while (l) {
        struct log_line *next = l->next;
        l->next = rev;
        rev = l;
        l = next;
    }
    while (rev) {
        struct log_line *next = rev->next;
        lq_log(rev->level, "%s", rev->msg);
        free(rev);
        rev = next;
    }
}

static void
deliver_snapshot_done(struct store *st, bool ok)
{
    st->snap_running = false;
    st->snap_ended = false;
    if (st->o.on_snapshot_done) st->o.on_snapshot_done(ok, st->o.ud);
}

static void
notify_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)what;
    struct store *st = arg;
    char buf[256];
    while (read(fd, buf, sizeof(buf)) > 0) continue;
    atomic_store(&st->notify_pending, false); /* before looking: a later change writes again */
    log_deferred(st);
    pthread_mutex_lock(&st->mu);
    bool snap_done = st->snap_done, snap_ok = st->snap_done_ok;
    st->snap_done = false;
    pthread_mutex_unlock(&st->mu);
    uint64_t durable = atomic_load(&st->durable);
    bool failing = atomic_load(&st->failing);
    if (durable != st->durable_told || failing != st->failing_told) {
        st->durable_told = durable;
        st->failing_told = failing;
        if (st->o.on_durable) st->o.on_durable(durable, st->o.ud);
    }
    if (snap_done) deliver_snapshot_done(st, snap_ok);
}

/* ---- loop -> writer ---- */
static struct item *
item_new(enum item_kind kind)
{
    struct item *it = lq_xcalloc(1, sizeof(*it));
    it->kind = kind;
    return it;
}

static void
push(struct store *st, struct item *it)
{
    pthread_mutex_lock(&st->mu);
    *st->todo_tail = it;
    st->todo_tail = &it->next;
    pthread_cond_signal(&st->cv);
    pthread_mutex_unlock(&st->mu);
}

static void
hand_over_snapshot(struct store *st)
{
    if (!st->snap_open.len) return;
    struct item *it = item_new(ITEM_SNAP_DATA);
    it->buf = st->snap_open;
    st->snap_open = (struct rec_buf){0};
    push(st, it);
}

#define SPARE_MAX     8
#define SPARE_MAX_CAP (1u << 20) /* a larger buffer (a burst) is not kept */

void
store_recycle(struct store *st, struct item *list)
{
    pthread_mutex_lock(&st->mu);
    while (list) {
        struct item *it = list;
        list = it->next;
        if (it->kind == ITEM_JOURNAL && st->nspare < SPARE_MAX && it->buf.cap <= SPARE_MAX_CAP) {
            it->buf.len = 0;
            it->next = st->spare;
            st->spare = it;
            st->nspare++;
            continue;
        }
        rec_buf_free(&it->buf);
        free(it);
    }
    pthread_mutex_unlock(&st->mu);
}

/* The open batch goes to the writer as it is: the buffer changes hands, no copy; the
 * next one starts in a spare buffer the writer gave back. */
static void
hand_over(struct store *st)
{
    if (st->open.len) {
        pthread_mutex_lock(&st->mu); /* once: a spare buffer out, the batch in */
        struct item *it = st->spare;
        if (it) {
            st->spare = it->next;
            st->nspare--;
        }
        struct rec_buf next = it ? it->buf : (struct rec_buf){0};
        if (!it) it = item_new(ITEM_JOURNAL);
        *it = (struct item){
            .kind = ITEM_JOURNAL, .first = st->open_first, .last = st->appended, .buf = st->open};
        *st->todo_tail = it;
        st->todo_tail = &it->next;
        pthread_cond_signal(&st->cv);
        pthread_mutex_unlock(&st->mu);
        st->open = next;
    }
    hand_over_snapshot(st);
}

static void
handoff_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd, (void)what;
    struct store *st = arg;
    st->handoff_armed = false;
    hand_over(st);
}

static void
arm_handoff(struct store *st)
{
    if (st->handoff_armed) return;
    st->handoff_armed = true;
    event_active(st->handoff_ev, EV_TIMEOUT, 0);
}

uint64_t
store_append(struct store *st, uint8_t type, const void *p, size_t len)
{
    uint64_t seq = ++st->appended;
    if (!st->open.len) st->open_first = seq;
    frame_put_unsealed(&st->open, type, seq, p, len);
    st->appended_bytes += FRAME_HDR + len;
    arm_handoff(st);
    return seq;
}

uint64_t
store_appended(const struct store *st)
{
    return st->appended;
}

uint64_t
store_durable(const struct store *st)
{
    return atomic_load(&st->durable);
}

static uint64_t
backlog_bytes(const struct store *st)
{
    return st->appended_bytes - atomic_load(&st->durable_bytes);
}

bool
store_backlogged(const struct store *st)
{
    return st->o.max_backlog && backlog_bytes(st) > st->o.max_backlog;
}

bool
store_failing(const struct store *st)
{
    return atomic_load(&st->failing);
}

/* ---- snapshots, the loop's half ---- */
int
store_snapshot_begin(struct store *st)
{
    if (st->snap_running || !st->recovered) return -1;
    hand_over(st); /* records up to S stay in the old segment */
    st->snap_running = true;
    st->snap_ended = false;
    st->snap_seq = st->appended;
    st->snap_records = 0;
    st->snap_added = 0;
    atomic_store(&st->snap_written, 0);
    push(st, item_new(ITEM_ROTATE));
    struct item *it = item_new(ITEM_SNAP_BEGIN);
    it->last = st->snap_seq;
    push(st, it);
    return 0;
}

void
store_snapshot_add(struct store *st, uint8_t type, const void *p, size_t len)
{
    if (!st->snap_running || st->snap_ended) return;
    frame_put_unsealed(&st->snap_open, type, ++st->snap_records, p, len);
    st->snap_added += FRAME_HDR + len;
    if (st->snap_open.len >= SNAP_HANDOFF_BYTES)
        hand_over_snapshot(st);
    else
        arm_handoff(st);
}

void
store_snapshot_end(struct store *st, bool ok)
{
    if (!st->snap_running || st->snap_ended) return;
    hand_over(st); /* the journal first: the snapshot may show what it changed */
    struct item *it = item_new(ITEM_SNAP_END);
    it->ok = ok;
    it->last = st->snap_records;
    push(st, it);
    st->snap_ended = true;
}

bool
store_snapshot_running(const struct store *st)
{
    return st->snap_running;
}

size_t
store_snapshot_backlog(const struct store *st)
{
    return (size_t)(st->snap_added - atomic_load(&st->snap_written));
}

bool
store_snapshot_wait(struct store *st)
{
    if (!st->snap_running || !st->snap_ended) return false;
    pthread_mutex_lock(&st->mu);
    while (!st->snap_done) pthread_cond_wait(&st->progress, &st->mu);
    bool ok = st->snap_done_ok;
    st->snap_done = false;
    pthread_mutex_unlock(&st->mu);
    log_deferred(st);
    deliver_snapshot_done(st, ok);
    return ok;
}

/* ---- stats ---- */
static int
cmp_u32(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return (x > y) - (x < y);
}

void
store_get_stats(const struct store *cst, struct store_stats *out)
{
    struct store *st = cst->self; /* the lock changes, the store does not */
    static uint32_t sorted[1024]; /* loop thread only */
    pthread_mutex_lock(&st->mu);
    *out = st->stats;
    uint32_t n = st->fsync_n < 1024 ? st->fsync_n : 1024;
    memcpy(sorted, st->fsync_us, n * sizeof(sorted[0]));
    pthread_mutex_unlock(&st->mu);
    qsort(sorted, n, sizeof(sorted[0]), cmp_u32);
    out->fsync_p50_us = n ? sorted[n / 2] : 0;
    out->fsync_p99_us = n ? sorted[(n * 99) / 100 < n ? (n * 99) / 100 : n - 1] : 0;
    out->failing = store_failing(st);
    out->appended = st->appended;
    out->durable = store_durable(st);
    out->backlog_bytes = backlog_bytes(st);
}

/* ---- open and close ---- */
static int
take_lock(struct store *st, char *err, size_t errlen)
{
    st->lockfd = openat(st->dirfd, "lunamq.lock", O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (st->lockfd < 0) {
        snprintf(err, errlen, "persistence_location %s: cannot open lunamq.lock: %s", st->dir,
                 strerror(errno));
        return -1;
    }
    if (flock(st->lockfd, LOCK_EX | LOCK_NB) < 0) {
        int e = errno;
        char pid[32] = "";
        ssize_t n = pread(st->lockfd, pid, sizeof(pid) - 1, 0);
        pid[n > 0 ? n : 0] = '\0';
        pid[strcspn(pid, "\n")] = '\0';
        if (e == EWOULDBLOCK)
            snprintf(err, errlen, "persistence_location %s is in use by another lunamq (pid %s)",
                     st->dir, pid[0] ? pid : "unknown");
        else
            snprintf(err, errlen, "persistence_location %s: cannot lock lunamq.lock: %s", st->dir,
                     strerror(e));
        return -1;
    }
    char pid[32];
    int n = snprintf(pid, sizeof(pid), "%ld\n", (long)getpid());
    if (ftruncate(st->lockfd, 0) < 0 || pwrite(st->lockfd, pid, (size_t)n, 0) != n) {
        snprintf(err, errlen, "persistence_location %s: cannot write lunamq.lock: %s", st->dir,
                 strerror(errno));
        return -1;
    }
    return 0;
}

static int
open_dir(struct store *st, char *err, size_t errlen)
{
    if (mkdir(st->dir, 0755) < 0 && errno != EEXIST) {
        snprintf(err, errlen, "persistence_location %s: cannot make it: %s", st->dir,
                 strerror(errno));
        return -1;
    }
    st->dirfd = open(st->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (st->dirfd < 0) {
        snprintf(err, errlen, "persistence_location %s: %s", st->dir, strerror(errno));
        return -1;
    }
    return 0;
}

static int
make_events(struct store *st)
{
    if (pipe(st->pipe) < 0) return -1;
    for (int i = 0; i < 2; i++) {
        fcntl(st->pipe[i], F_SETFL, O_NONBLOCK);
        fcntl(st->pipe[i], F_SETFD, FD_CLOEXEC);
    }
    st->notify_ev = event_new(st->base, st->pipe[0], EV_READ | EV_PERSIST, notify_cb, st);
    st->handoff_ev = event_new(st->base, -1, 0, handoff_cb, st);
    if (!st->notify_ev || !st->handoff_ev || event_add(st->notify_ev, NULL) < 0) return -1;
    return 0;
}

struct store *
store_open(struct event_base *base, const struct store_opts *o, char *err, size_t errlen)
{
    struct store *st = lq_xcalloc(1, sizeof(*st));
    st->self = st;
    st->base = base;
    st->o = *o;
    st->dir = lq_xstrdup(o->dir && o->dir[0] ? o->dir : ".");
    st->o.dir = st->dir;
    st->dirfd = st->lockfd = st->pipe[0] = st->pipe[1] = -1;
    st->todo_tail = &st->todo;
    pthread_mutex_init(&st->mu, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&st->cv, &ca);
    pthread_cond_init(&st->progress, &ca);
    pthread_condattr_destroy(&ca);
    if (open_dir(st, err, errlen) < 0 || take_lock(st, err, errlen) < 0) goto fail;
    if (make_events(st) < 0) {
        snprintf(err, errlen, "store: cannot set up its events: %s", strerror(errno));
        goto fail;
    }
    return st;
fail:
    store_close(st);
    return NULL;
}

/* Bounded: a failing disk must not keep the broker from stopping. */
static void
wait_durable(struct store *st)
{
    struct timespec until;
    clock_gettime(CLOCK_MONOTONIC, &until);
    until.tv_sec += CLOSE_WAIT_MS / 1000;
    pthread_mutex_lock(&st->mu);
    while (atomic_load(&st->durable) < st->appended)
        if (pthread_cond_timedwait(&st->progress, &st->mu, &until) == ETIMEDOUT) break;
    pthread_mutex_unlock(&st->mu);
}

static void
stop_writer(struct store *st)
{
    if (!st->thread_started) return;
    hand_over(st);
    wait_durable(st);
    pthread_mutex_lock(&st->mu);
    st->stop = true;
    pthread_cond_signal(&st->cv);
    pthread_mutex_unlock(&st->mu);
    pthread_join(st->thread, NULL);
    st->thread_started = false;
    log_deferred(st);
    uint64_t durable = atomic_load(&st->durable);
    if (durable < st->appended)
        lq_log(LQ_LOG_ERR,
               "persistence: stopping with records %" PRIu64 "..%" PRIu64
               " not on disk (the disk failed)",
               durable + 1, st->appended);
}

void
store_close(struct store *st)
{
    if (!st) return;
    stop_writer(st);
    writer_free(st->w);
    while (st->spare) {
        struct item *next = st->spare->next;
        rec_buf_free(&st->spare->buf);
        free(st->spare);
        st->spare = next;
    }
    while (st->todo) {
        struct item *next = st->todo->next;
        rec_buf_free(&st->todo->buf);
        free(st->todo);
        st->todo = next;
    }
    log_deferred(st);
    if (st->notify_ev) event_free(st->notify_ev);
    if (st->handoff_ev) event_free(st->handoff_ev);
    for (int i = 0; i < 2; i++)
        if (st->pipe[i] >= 0) close(st->pipe[i]);
    if (st->lockfd >= 0) close(st->lockfd); /* the flock goes with it */
    if (st->dirfd >= 0) close(st->dirfd);
    rec_buf_free(&st->open);
    rec_buf_free(&st->snap_open);
    pthread_cond_destroy(&st->cv);
    pthread_cond_destroy(&st->progress);
    pthread_mutex_destroy(&st->mu);
    free(st->dir);
    free(st);
}
