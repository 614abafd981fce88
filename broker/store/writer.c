/* SPDX-License-Identifier: MIT
 *
 * writer: the thread that owns the journal on disk. It takes everything the loop
 * handed over, write()s it to the current segment and (power mode) fdatasyncs once
 * for all of it: natural group commit, whatever arrives during one sync goes into the
 * next. Then it publishes the durable sequence and wakes the loop.
 *
 * Everything not yet fdatasynced stays in memory (the unsynced list). When a write
 * or a sync fails, the segment is not trusted any more: the store says failing, and
 * every second the writer rewrites the whole unsynced list into a fresh segment
 * (written as <name>.new and renamed once synced, so that a segment the kernel still
 * holds is never truncated). Replay skips the duplicates this makes. */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/uio.h>
#include <unistd.h>

#include "lq.h"
#include "store_int.h"

#define SECOND_MS       1000
#define PROCESS_PACE_US 1000

struct writer {
    struct store *st;
    int fd;            /* the current segment, -1: none open */
    char seg_name[64]; /* its name once synced */
    bool seg_renamed;  /* false while it is <name>.new (a retry) */
    bool seg_dirty;    /* written since its last fdatasync */
    bool dir_dirty;    /* a segment made or renamed since the last directory fsync */
    bool failing;
    uint64_t retry_at_ms, last_sync_ms;
    struct item *unsynced, **unsynced_tail;    /* written or not: not yet fdatasynced */
    uint64_t counted;                          /* durable_bytes holds the items up to here */
    uint64_t jb_cur, jr_cur, jb_prev, jr_prev; /* journal since / before the last rotation */
    struct snap_writer *snap;
};

static uint64_t
mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static uint64_t
mono_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000 + (uint64_t)ts.tv_nsec / 1000;
}

/* all of iov[0..n) (it is advanced over what was written) */
static int
writev_all(int fd, struct iovec *iov, int n)
{
    for (;;) {
        while (n && iov->iov_len == 0) { /* nothing to write is not an end of file */
            iov++;
            n--;
        }
        if (!n) return 0;
        ssize_t w = writev(fd, iov, n);
        if (w < 0 && errno == EINTR) continue;
        if (w < 0) return -1;
        if (w == 0) {
            errno = EIO;
            return -1;
        }
        while (n && (size_t)w >= iov->iov_len) {
            w -= (ssize_t)iov->iov_len;
            iov++;
            n--;
        }
        if (n) {
            iov->iov_base = (uint8_t *)iov->iov_base + w;
            iov->iov_len -= (size_t)w;
        }
    }
}

int
store_write_all(int fd, const uint8_t *p, size_t n)
{
    struct iovec v = {(void *)(uintptr_t)p, n};
    return writev_all(fd, &v, 1);
}

/* ---- segments ---- */
static int
open_segment(struct writer *w, uint64_t first, bool retry)
{
    char name[80];
    store_segment_name(w->seg_name, sizeof(w->seg_name), first);
    snprintf(name, sizeof(name), "%s%s", w->seg_name, retry ? ".new" : "");
    w->fd = openat(w->st->dirfd, name, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (w->fd < 0) return -1;
    w->seg_renamed = !retry;
    w->dir_dirty = true;
    return 0;
}

/* fdatasync the segment; a retry's segment takes its real name once synced */
static int
seal(struct writer *w)
{
    if (w->fd < 0) return 0;
    if (w->seg_dirty && fdatasync(w->fd) < 0) return -1;
    w->seg_dirty = false;
    if (!w->seg_renamed) {
        char tmp[80];
        snprintf(tmp, sizeof(tmp), "%s.new", w->seg_name);
        if (renameat(w->st->dirfd, tmp, w->st->dirfd, w->seg_name) < 0) return -1;
        w->seg_renamed = true;
        w->dir_dirty = true;
    }
    return 0;
}

static void
record_latency(struct writer *w, uint64_t us)
{
    struct store *st = w->st;
    pthread_mutex_lock(&st->mu);
    st->fsync_us[st->fsync_n++ % 1024] = us > UINT32_MAX ? UINT32_MAX : (uint32_t)us;
    pthread_mutex_unlock(&st->mu);
}

static int
sync_all(struct writer *w)
{
    uint64_t t0 = mono_us();
    if (seal(w) < 0) return -1;
    if (w->dir_dirty && store_fsync_dir(w->st) < 0) return -1;
    w->dir_dirty = false;
    record_latency(w, mono_us() - t0);
    w->last_sync_ms = mono_ms();
    return 0;
}

static int
rotate(struct writer *w)
{
    if (sync_all(w) < 0) return -1;
    if (w->fd >= 0) close(w->fd);
    w->fd = -1;
    return 0;
}

/* n journal items linked from `it`, in one writev: the loop hands over one item per
 * iteration, a dozen or more between two of the writer's turns */
#define RUN_MAX 64
static int
write_journal(struct writer *w, struct item *it, size_t n, bool retry)
{
    if (w->fd < 0 && open_segment(w, it->first, retry) < 0) return -1;
    struct iovec iov[RUN_MAX];
    size_t k = 0;
    for (struct item *x = it; k < n; x = x->next) iov[k++] = (struct iovec){x->buf.p, x->buf.len};
    if (writev_all(w->fd, iov, (int)n) < 0) return -1;
    w->seg_dirty = true;
    store_crash_point("after-write");
    if (!retry)
        for (struct item *x = it; n--; x = x->next) {
            w->jb_cur += x->buf.len;
            w->jr_cur += x->last - x->first + 1;
        }
    return 0;
}

/* ---- durable ---- */
static void
update_stats(struct writer *w, uint64_t batches)
{
    struct store *st = w->st;
    pthread_mutex_lock(&st->mu);
    st->stats.batches += batches;
    st->stats.journal_bytes = w->jb_prev + w->jb_cur;
    st->stats.journal_records = w->jr_prev + w->jr_cur;
    pthread_cond_broadcast(&st->progress);
    pthread_mutex_unlock(&st->mu);
}

static void
count_durable(struct writer *w, const struct item *it)
{
    if (it->kind != ITEM_JOURNAL || it->last <= w->counted) return;
    atomic_fetch_add(&w->st->durable_bytes, it->buf.len);
    atomic_store(&w->st->durable, it->last);
    w->counted = it->last;
}

static void
free_items(struct item *it)
{
    while (it) {
        struct item *next = it->next;
        rec_buf_free(&it->buf);
        free(it);
        it = next;
    }
}

/* everything unsynced is on disk now */
static void
publish_unsynced(struct writer *w)
{
    for (struct item *it = w->unsynced; it; it = it->next) count_durable(w, it);
    store_recycle(w->st, w->unsynced);
    w->unsynced = NULL;
    w->unsynced_tail = &w->unsynced;
    update_stats(w, 1);
    store_notify_loop(w->st);
}

static void
keep(struct writer *w, struct item *it)
{
    it->next = NULL;
    *w->unsynced_tail = it;
    w->unsynced_tail = &it->next;
}

/* Process mode: written is all it promises, so what was written needs no copy for a
 * retry (keeping a second of journal in memory cost more CPU in page faults than the
 * writes themselves); only what failed stays. Releases the items kept from *at on. */
static void
forget(struct writer *w, struct item **at)
{
    store_recycle(w->st, *at);
    *at = NULL;
    w->unsynced_tail = at;
}

/* ---- failure and retry ---- */
static void
fail(struct writer *w, const char *what)
{
    int e = errno;
    struct store *st = w->st;
    pthread_mutex_lock(&st->mu);
    st->stats.errors++;
    pthread_mutex_unlock(&st->mu);
    if (!w->failing) {
        store_defer_log(st, LQ_LOG_ERR,
                        "persistence: %s %s/%s failed: %s; nothing more is acknowledged as "
                        "durable until the disk works again (retrying every second)",
                        what, st->dir, w->seg_name, strerror(e));
        w->failing = true;
        atomic_store(&st->failing, true);
        store_notify_loop(st);
    }
    if (w->fd >= 0) close(w->fd); /* not trusted any more: the retry starts a new segment */
    w->fd = -1;
    w->seg_dirty = false;
    w->retry_at_ms = mono_ms() + SECOND_MS;
}

static void
retry(struct writer *w)
{
    if (!w->failing || mono_ms() < w->retry_at_ms) return;
    for (struct item *it = w->unsynced; it; it = it->next) {
        int rc = it->kind == ITEM_ROTATE ? rotate(w) : write_journal(w, it, 1, true);
        if (rc < 0) {
            fail(w, it->kind == ITEM_ROTATE ? "fdatasync of" : "write to");
            return;
        }
    }
    if (sync_all(w) < 0) {
        fail(w, "fdatasync of");
        return;
    }
    w->failing = false;
    atomic_store(&w->st->failing, false);
    store_defer_log(w->st, LQ_LOG_NOTICE,
                    "persistence: the disk works again (recovered): %s/%s written and synced",
                    w->st->dir, w->seg_name);
    publish_unsynced(w);
}

/* A snapshot shows the live state of its last slice, and the records that made that
 * state were handed over before its end: they are synced before it counts, in either
 * mode. Else a crash between the two would keep the snapshot's half of a change (a
 * QoS 2 packet id) and lose the journal's (its queue entries). A journal that cannot
 * be synced abandons the snapshot. */
static void
snapshot_after_journal(struct writer *w, struct item *end)
{
    if (w->failing) {
        end->ok = false;
        return;
    }
    if (!w->unsynced && !w->seg_dirty) return;
    if (sync_all(w) < 0) {
        fail(w, "fdatasync of");
        end->ok = false;
        return;
    }
    publish_unsynced(w);
}

/* ---- the thread ---- */
/* Process mode: written is enough (the writes of one hand-over make one batch). */
static void
process(struct writer *w, struct item *items, bool power)
{
    uint64_t was = w->counted;
    for (struct item *it = items, *next; it; it = next) {
        next = it->next;
        if (it->kind == ITEM_ROTATE) {
            struct item **at = w->unsynced_tail;
            keep(w, it);
            if (w->failing) continue;
            if (rotate(w) < 0) {
                fail(w, "fdatasync of");
                continue;
            }
            w->jb_prev += w->jb_cur;
            w->jr_prev += w->jr_cur;
            w->jb_cur = w->jr_cur = 0;
            if (!power) forget(w, at);
            continue;
        }
        if (it->kind == ITEM_SNAP_END) snapshot_after_journal(w, it);
        if (it->kind != ITEM_JOURNAL) {
            snap_item(w->st, &w->snap, it);
            continue;
        }
        /* a run of journal items, kept in order (keep() relinks them) */
        struct item **run = w->unsynced_tail;
        size_t n = 0;
        for (; it && it->kind == ITEM_JOURNAL && n < RUN_MAX; it = next, n++) {
            next = it->next;
            frames_seal(it->buf.p, it->buf.len);
            keep(w, it);
        }
        next = it;
        if (w->failing) continue;
        if (write_journal(w, *run, n, false) < 0) {
            fail(w, "write to");
            continue;
        }
        if (power) continue;
        for (struct item *x = *run; x; x = x->next) count_durable(w, x);
        forget(w, run);
    }
    if (w->counted != was) {
        update_stats(w, 1);
        store_notify_loop(w->st);
    }
}

static uint64_t
deadline_ms(const struct writer *w, bool power)
{
    if (w->failing) return w->retry_at_ms;
    if (!power && (w->unsynced || w->seg_dirty)) return w->last_sync_ms + SECOND_MS;
    return UINT64_MAX;
}

static void
wait_for_work(struct store *st, struct writer *w, bool power)
{
    while (!st->todo && !st->stop) {
        uint64_t until = deadline_ms(w, power);
        if (until == UINT64_MAX) {
            pthread_cond_wait(&st->cv, &st->mu);
            continue;
        }
        if (mono_ms() >= until) return;
        struct timespec ts = {.tv_sec = (time_t)(until / 1000),
                              .tv_nsec = (long)(until % 1000) * 1000000};
        pthread_cond_timedwait(&st->cv, &st->mu, &ts);
    }
}

void *
writer_main(void *arg)
{
    struct store *st = arg;
    struct writer *w = st->w;
    bool power = st->o.sync == STORE_SYNC_POWER;
    pthread_mutex_lock(&st->mu);
    for (;;) {
        wait_for_work(st, w, power);
        struct item *items = st->todo;
        st->todo = NULL;
        st->todo_tail = &st->todo;
        bool stopping = st->stop;
        pthread_mutex_unlock(&st->mu);
        uint64_t took_at = mono_us();
        process(w, items, power);
        retry(w);
        /* process mode has no fdatasync to pace it: without a pause the writer and the
         * loop would hand each other one loop iteration's records at a time, a write()
         * and two wake-ups each; a short one lets a batch build up, as a sync does.
         * It counts from the hand-over taken: the write is part of the pace. */
        uint64_t spent = mono_us() - took_at;
        if (!power && items && !stopping && spent < PROCESS_PACE_US) {
            struct timespec pause = {0, (long)(PROCESS_PACE_US - spent) * 1000};
            nanosleep(&pause, NULL);
        }
        bool due = power || stopping || mono_ms() >= w->last_sync_ms + SECOND_MS;
        if (!w->failing && (w->unsynced || w->seg_dirty) && due) {
            if (sync_all(w) < 0)
                fail(w, "fdatasync of");
            else
                publish_unsynced(w);
        }
        pthread_mutex_lock(&st->mu);
        if (stopping && !st->todo) break;
    }
    pthread_mutex_unlock(&st->mu);
    return NULL;
}

void
writer_snapshot_done(struct writer *w)
{
    w->jb_prev = w->jr_prev = 0;
    update_stats(w, 0);
}

struct writer *
writer_new(struct store *st, uint64_t journal_bytes, uint64_t journal_records)
{
    struct writer *w = lq_xcalloc(1, sizeof(*w));
    w->st = st;
    w->fd = -1;
    w->unsynced_tail = &w->unsynced;
    w->counted = atomic_load(&st->durable);
    w->jb_cur = journal_bytes;
    w->jr_cur = journal_records;
    w->last_sync_ms = mono_ms();
    st->stats.journal_bytes = journal_bytes;
    st->stats.journal_records = journal_records;
    return w;
}

void
writer_free(struct writer *w)
{
    if (!w) return;
    if (w->fd >= 0) close(w->fd);
    free_items(w->unsynced);
    snap_writer_free(w->snap);
    free(w);
}
