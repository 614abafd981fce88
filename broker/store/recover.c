/* SPDX-License-Identifier: MIT
 *
 * recover: start-up replay. The newest complete snapshot (a valid footer) first,
 * then the segments after it in order, with sequence numbers that must follow on
 * (duplicates from a rewritten batch are skipped; a gap is corruption). A bad frame
 * at the end of the last segment is a torn write, never acknowledged: cut off. A bad
 * frame elsewhere stops replay there: that segment and the later ones are renamed
 * *.corrupt, and the caller starts with the valid prefix (then writes a snapshot).
 * Files are mmap()ed: no copy, and the CRC runs at memory speed. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/mman.h>
#include <sys/stat.h>

#include "lq.h"
#include "store_int.h"

struct listing {
    uint64_t *snaps, *segs; /* sequence numbers from the names */
    size_t nsnaps, nsegs;
};

struct mapped {
    const uint8_t *p;
    size_t len;
};

static int
map_file(struct store *st, const char *name, struct mapped *m)
{
    *m = (struct mapped){0};
    int fd = openat(st->dirfd, name, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return -1;
    struct stat sb;
    int rc = fstat(fd, &sb);
    if (rc == 0 && sb.st_size > 0) {
        void *p = mmap(NULL, (size_t)sb.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
        if (p == MAP_FAILED) {
            rc = -1;
        } else {
            madvise(p, (size_t)sb.st_size, MADV_SEQUENTIAL);
            m->p = p;
            m->len = (size_t)sb.st_size;
        }
    }
    close(fd);
    return rc;
}

static void
unmap(struct mapped *m)
{
    if (m->len) munmap((void *)(uintptr_t)m->p, m->len);
    *m = (struct mapped){0};
}

/* ---- the directory ---- */
static void
add_seq(uint64_t **v, size_t *n, uint64_t seq)
{
    *v = lq_xrealloc(*v, (*n + 1) * sizeof(**v));
    (*v)[(*n)++] = seq;
}

static int
cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return (x > y) - (x < y);
}

/* Lists snapshots and segments; unfinished files (a snapshot's .tmp, a retried
 * segment's .new) are deleted: they never counted. */
static int
list_dir(struct store *st, struct listing *l)
{
    int fd = openat(st->dirfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    DIR *d = fd >= 0 ? fdopendir(fd) : NULL;
    if (!d) {
        if (fd >= 0) close(fd);
        return -1;
    }
    struct dirent *e;
    uint64_t s;
    while ((e = readdir(d))) {
        if (store_parse_name(e->d_name, "snapshot", "snap", &s))
            add_seq(&l->snaps, &l->nsnaps, s);
        else if (store_parse_name(e->d_name, "journal", "log", &s))
            add_seq(&l->segs, &l->nsegs, s);
        else if (store_parse_name(e->d_name, "snapshot", "tmp", &s) ||
                 store_parse_name(e->d_name, "journal", "log.new", &s))
            unlinkat(st->dirfd, e->d_name, 0);
    }
    closedir(d);
    if (l->nsnaps) qsort(l->snaps, l->nsnaps, sizeof(uint64_t), cmp_u64);
    if (l->nsegs) qsort(l->segs, l->nsegs, sizeof(uint64_t), cmp_u64);
    return 0;
}

/* ---- snapshots ---- */
struct snap_check {
    uint64_t seq, records;
    bool header, footer;
};

static bool
u8_u64_payload(const uint8_t *p, size_t len, uint8_t *sub, uint64_t *v)
{
    struct rec_reader r = {.p = p, .len = len};
    return rec_get_u8(&r, sub) && rec_get_u64(&r, v) && r.at == len;
}

static bool
check_snapshot_frame(uint8_t type, uint64_t seq, const uint8_t *p, size_t len, void *arg)
{
    struct snap_check *c = arg;
    uint8_t sub;
    uint64_t v;
    if (c->footer) return false; /* nothing after the footer */
    if (!c->header)
        return (c->header = type == 0 && seq == 0 && u8_u64_payload(p, len, &sub, &v) &&
                            sub == SNAP_HDR_SUBTYPE && v == c->seq);
    if (seq != c->records + 1) return false;
    if (type != 0) return ++c->records, true;
    return (c->footer =
                u8_u64_payload(p, len, &sub, &v) && sub == SNAP_END_SUBTYPE && v == c->records);
}

struct replay {
    store_record_fn fn;
    void *arg;
    uint64_t last; /* the last journal sequence applied */
    uint64_t records;
};

static bool
emit_snapshot_frame(uint8_t type, uint64_t seq, const uint8_t *p, size_t len, void *arg)
{
    (void)seq;
    struct replay *rp = arg;
    if (type == 0) return true;
    rp->fn(type, p, len, true, rp->arg);
    rp->records++;
    return true;
}

static bool
load_snapshot(struct store *st, uint64_t seq, struct replay *rp, struct store_recovery *info)
{
    char name[80];
    store_snapshot_name(name, sizeof(name), seq, "snap");
    struct mapped m;
    if (map_file(st, name, &m) < 0) return false;
    struct snap_check c = {.seq = seq};
    bool ok = store_scan(m.p, m.len, true, check_snapshot_frame, &c) == m.len && c.footer;
    if (ok) {
        store_scan(m.p, m.len, false, emit_snapshot_frame, rp);
        info->bytes += m.len;
        info->snapshot_seq = seq;
    } else {
        char bad[96];
        snprintf(bad, sizeof(bad), "%s.corrupt", name);
        lq_log(LQ_LOG_ERR, "persistence: %s/%s is incomplete or damaged: set aside as %s", st->dir,
               name, bad);
        renameat(st->dirfd, name, st->dirfd, bad);
    }
    unmap(&m);
    return ok;
}

/* ---- segments ---- */
static bool
apply_journal_frame(uint8_t type, uint64_t seq, const uint8_t *p, size_t len, void *arg)
{
    struct replay *rp = arg;
    if (seq <= rp->last) return true; /* written twice (a retried batch): once is enough */
    if (seq != rp->last + 1) return false;
    rp->last = seq;
    if (type == 0) return true; /* the store's own */
    rp->fn(type, p, len, false, rp->arg);
    rp->records++;
    return true;
}

static void
cut_tail(struct store *st, const char *name, size_t at, const char *why)
{
    int fd = openat(st->dirfd, name, O_WRONLY | O_CLOEXEC);
    if (fd < 0 || ftruncate(fd, (off_t)at) < 0 || fsync(fd) < 0)
        lq_log(LQ_LOG_ERR, "persistence: cannot truncate %s/%s: %s", st->dir, name,
               strerror(errno));
    else
        lq_log(LQ_LOG_NOTICE, "persistence: %s/%s: %s at byte %zu: cut off there", st->dir, name,
               why, at);
    if (fd >= 0) close(fd);
}

static void
set_aside(struct store *st, const struct listing *l, size_t from)
{
    for (size_t i = from; i < l->nsegs; i++) {
        char name[80], bad[96];
        store_segment_name(name, sizeof(name), l->segs[i]);
        snprintf(bad, sizeof(bad), "%s.corrupt", name);
        if (renameat(st->dirfd, name, st->dirfd, bad) == 0)
            lq_log(LQ_LOG_ERR, "persistence: %s/%s set aside as %s", st->dir, name, bad);
    }
}

/* Returns false when replay must stop at segment i (corruption, set aside). */
static bool
replay_segment(struct store *st, const struct listing *l, size_t i, struct replay *rp,
               struct store_recovery *info)
{
    char name[80];
    store_segment_name(name, sizeof(name), l->segs[i]);
    if (l->segs[i] > rp->last + 1) {
        lq_log(LQ_LOG_ERR,
               "persistence: %s/%s at byte 0: records %" PRIu64 "..%" PRIu64 " are missing",
               st->dir, name, rp->last + 1, l->segs[i] - 1);
        return false;
    }
    struct mapped m;
    if (map_file(st, name, &m) < 0) {
        lq_log(LQ_LOG_ERR, "persistence: cannot read %s/%s: %s", st->dir, name, strerror(errno));
        return false;
    }
    size_t good = store_scan(m.p, m.len, true, apply_journal_frame, rp), len = m.len;
    unmap(&m);
    info->segments++;
    info->bytes += good;
    if (good == len) return true;
    if (i + 1 == l->nsegs) {
        cut_tail(st, name, good, "torn record (never acknowledged)");
        info->truncated_tail = true;
        return true;
    }
    if (l->segs[i + 1] <= rp->last + 1) { /* a failed write, rewritten in the next segment */
        cut_tail(st, name, good, "unfinished write, rewritten in the next segment");
        return true;
    }
    lq_log(LQ_LOG_ERR, "persistence: %s/%s at byte %zu: corrupt record; replay stops there",
           st->dir, name, good);
    return false;
}

static int
start_writer(struct store *st, uint64_t journal_bytes, uint64_t journal_records)
{
    st->w = writer_new(st, journal_bytes, journal_records);
    if (pthread_create(&st->thread, NULL, writer_main, st) != 0) return -1;
    st->thread_started = true;
    st->recovered = true;
    return 0;
}

int
store_recover(struct store *st, store_record_fn fn, void *arg, struct store_recovery *info,
              char *err, size_t errlen)
{
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    *info = (struct store_recovery){0};
    struct listing l = {0};
    if (st->recovered || list_dir(st, &l) < 0) {
        snprintf(err, errlen, "persistence_location %s: cannot read it: %s", st->dir,
                 st->recovered ? "recovered already" : strerror(errno));
        return -1;
    }
    struct replay rp = {.fn = fn, .arg = arg};
    for (size_t i = l.nsnaps; i-- > 0;)
        if (load_snapshot(st, l.snaps[i], &rp, info)) break;
    if (info->snapshot_seq) store_remove_older(st, info->snapshot_seq);
    rp.last = info->snapshot_seq;
    uint64_t snap_records = rp.records, snap_bytes = info->bytes;
    for (size_t i = 0; i < l.nsegs; i++) {
        if (l.segs[i] <= info->snapshot_seq) continue;
        if (!replay_segment(st, &l, i, &rp, info)) {
            set_aside(st, &l, i);
            info->corrupt = true;
            break;
        }
    }
    info->records = rp.records;
    st->appended = rp.last;
    atomic_store(&st->durable, rp.last);
    st->durable_told = rp.last;
    free(l.snaps);
    free(l.segs);
    if (start_writer(st, info->bytes - snap_bytes, rp.records - snap_records) < 0) {
        snprintf(err, errlen, "persistence: cannot start the writer thread");
        return -1;
    }
    clock_gettime(CLOCK_MONOTONIC, &t1);
    info->seconds = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
    return 0;
}
