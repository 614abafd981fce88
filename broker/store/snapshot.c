/* SPDX-License-Identifier: MIT
 *
 * snapshot: the writer's half of compaction. The loop streams the live state as
 * frames; here they go straight into snapshot-<S>.tmp (a type-0 header carrying S
 * first, a type-0 footer carrying the record count last, so that a file cut short is
 * recognisable). At the end: fdatasync, rename to .snap, fsync the directory, then
 * the segments and snapshots it replaces are deleted. Only the writer thread runs
 * this; the loop learns the outcome through on_snapshot_done. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "lq.h"
#include "store_int.h"

struct snap_writer {
    struct store *st;
    int fd;
    uint64_t seq, bytes;
    bool bad; /* a write failed: the rest is dropped, the end abandons it */
    double started;
};

static int
write_marker(struct snap_writer *sw, uint8_t subtype, uint64_t frame_seq, uint64_t value)
{
    struct rec_buf b = {0}, payload = {0};
    rec_u8(&payload, subtype);
    rec_u64(&payload, value);
    frame_put(&b, 0, frame_seq, payload.p, payload.len);
    int rc = store_write_all(sw->fd, b.p, b.len);
    sw->bytes += b.len;
    rec_buf_free(&b);
    rec_buf_free(&payload);
    return rc;
}

/* Logs the first failure (later steps are skipped); returns false for finish(). */
static bool
go_bad(struct snap_writer *sw, const char *what)
{
    if (sw->bad) return false;
    sw->bad = true;
    store_defer_log(sw->st, LQ_LOG_ERR, "persistence: snapshot %" PRIu64 " in %s: %s: %s", sw->seq,
                    sw->st->dir, what, strerror(errno));
    return false;
}

static struct snap_writer *
begin(struct store *st, uint64_t seq)
{
    struct snap_writer *sw = lq_xcalloc(1, sizeof(*sw));
    sw->st = st;
    sw->seq = seq;
    sw->started = lq_wall_time();
    char name[80];
    store_snapshot_name(name, sizeof(name), seq, "tmp");
    sw->fd = openat(st->dirfd, name, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (sw->fd < 0)
        go_bad(sw, "cannot create it");
    else if (write_marker(sw, SNAP_HDR_SUBTYPE, 0, seq) < 0)
        go_bad(sw, "write");
    return sw;
}

static void
add(struct snap_writer *sw, struct item *it)
{
    if (!sw->bad && store_write_all(sw->fd, it->buf.p, it->buf.len) < 0) go_bad(sw, "write");
    sw->bytes += it->buf.len;
    atomic_fetch_add(&sw->st->snap_written, it->buf.len);
    store_crash_point("mid-snapshot");
}

static bool
finish(struct snap_writer *sw, uint64_t records)
{
    struct store *st = sw->st;
    char tmp[80], name[80];
    store_snapshot_name(tmp, sizeof(tmp), sw->seq, "tmp");
    store_snapshot_name(name, sizeof(name), sw->seq, "snap");
    if (write_marker(sw, SNAP_END_SUBTYPE, records + 1, records) < 0) return go_bad(sw, "write");
    if (fdatasync(sw->fd) < 0) return go_bad(sw, "fdatasync");
    if (renameat(st->dirfd, tmp, st->dirfd, name) < 0) return go_bad(sw, "rename");
    store_crash_point("snapshot-renamed");
    if (store_fsync_dir(st) < 0) return go_bad(sw, "directory fsync");
    store_remove_older(st, sw->seq);
    return true;
}

void
snap_writer_free(struct snap_writer *sw)
{
    if (!sw) return;
    if (sw->fd >= 0) {
        close(sw->fd);
        char tmp[80];
        store_snapshot_name(tmp, sizeof(tmp), sw->seq, "tmp");
        unlinkat(sw->st->dirfd, tmp, 0); /* gone already when it was renamed */
    }
    free(sw);
}

static void
end(struct store *st, struct snap_writer *sw, bool ok, uint64_t records)
{
    ok = ok && sw && !sw->bad && finish(sw, records);
    pthread_mutex_lock(&st->mu);
    if (ok) {
        st->stats.last_snapshot_at = lq_wall_time();
        st->stats.last_snapshot_seconds = st->stats.last_snapshot_at - sw->started;
        st->stats.last_snapshot_bytes = sw->bytes;
    }
    st->snap_done = true;
    st->snap_done_ok = ok;
    pthread_cond_broadcast(&st->progress);
    pthread_mutex_unlock(&st->mu);
    if (ok) writer_snapshot_done(st->w);
    store_notify_loop(st);
}

void
snap_item(struct store *st, struct snap_writer **sw, struct item *it)
{
    switch (it->kind) {
    case ITEM_SNAP_BEGIN:
        snap_writer_free(*sw); /* the loop allows one at a time: defensive */
        *sw = begin(st, it->last);
        break;
    case ITEM_SNAP_DATA:
        frames_seal(it->buf.p, it->buf.len);
        if (*sw) add(*sw, it);
        break;
    case ITEM_SNAP_END:
        end(st, *sw, it->ok, it->last);
        snap_writer_free(*sw);
        *sw = NULL;
        break;
    default: break;
    }
    rec_buf_free(&it->buf);
    free(it);
}

/* ---- compaction: what a snapshot at seq replaces ---- */
static bool
parse_seq(const char *name, const char *prefix, const char *suffix, uint64_t *seq)
{
    size_t lp = strlen(prefix), ls = strlen(suffix), n = strlen(name);
    if (n != lp + 20 + ls || strncmp(name, prefix, lp) || strcmp(name + lp + 20, suffix))
        return false;
    uint64_t v = 0;
    for (size_t i = lp; i < lp + 20; i++) {
        if (name[i] < '0' || name[i] > '9') return false;
        v = v * 10 + (uint64_t)(name[i] - '0');
    }
    *seq = v;
    return true;
}

bool
store_parse_name(const char *name, const char *kind, const char *ext, uint64_t *seq)
{
    char prefix[32], suffix[16];
    snprintf(prefix, sizeof(prefix), "%s-", kind);
    snprintf(suffix, sizeof(suffix), ".%s", ext);
    return parse_seq(name, prefix, suffix, seq);
}

void
store_remove_older(struct store *st, uint64_t seq)
{
    int fd = openat(st->dirfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    DIR *d = fd >= 0 ? fdopendir(fd) : NULL;
    if (!d) {
        if (fd >= 0) close(fd);
        return;
    }
    struct dirent *e;
    uint64_t s;
    while ((e = readdir(d))) {
        bool old = (store_parse_name(e->d_name, "journal", "log", &s) && s <= seq) ||
                   (store_parse_name(e->d_name, "snapshot", "snap", &s) && s < seq);
        if (old) unlinkat(st->dirfd, e->d_name, 0);
    }
    closedir(d);
}
