/* SPDX-License-Identifier: MIT
 *
 * store: the journal on a real directory with a real event loop. Append -> durable in
 * both sync modes, replay in order, a torn tail cut off, a corrupt segment set aside,
 * snapshots and compaction, incomplete snapshots ignored, the directory lock, write
 * errors (RLIMIT_FSIZE in a child) and their recovery, the scanner's bounds, and a
 * small benchmark (appends made durable per second, recovery read speed). */
#include <check.h>
#include <dirent.h>
#include <fcntl.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include <event2/event.h>

#include "../../broker/store/store_int.h"
#include "lq.h"
#include "store.h"
#include "suites.h"

/* ---- a scratch directory ---- */
static char dir[64];

static void
make_dir(void)
{
    strcpy(dir, "/tmp/lunamq-store-XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(dir));
}

static void
remove_dir(void)
{
    DIR *d = opendir(dir);
    if (!d) return;
    struct dirent *e;
    char p[512];
    while ((e = readdir(d)))
        if (e->d_name[0] != '.') {
            snprintf(p, sizeof(p), "%s/%s", dir, e->d_name);
            unlink(p);
        }
    closedir(d);
    rmdir(dir);
}

static bool
exists(const char *name)
{
    char p[512];
    snprintf(p, sizeof(p), "%s/%s", dir, name);
    return access(p, F_OK) == 0;
}

static off_t
file_size(const char *name)
{
    char p[512];
    struct stat sb;
    snprintf(p, sizeof(p), "%s/%s", dir, name);
    return stat(p, &sb) == 0 ? sb.st_size : -1;
}

static const char *
seg(uint64_t first)
{
    static char name[80];
    store_segment_name(name, sizeof(name), first);
    return name;
}

/* ---- a store with its loop ---- */
struct fixture {
    struct event_base *base;
    struct store *st;
    uint64_t durable;
    int durable_calls, failing_calls;
    int snap_done;
    bool snap_ok;
};

static void
on_durable(uint64_t durable, void *ud)
{
    struct fixture *f = ud;
    f->durable = durable;
    f->durable_calls++;
    if (store_failing(f->st)) f->failing_calls++;
}

static void
on_snapshot_done(bool ok, void *ud)
{
    struct fixture *f = ud;
    f->snap_done++;
    f->snap_ok = ok;
}

/* recovered records: payload is the u64 the test wrote */
struct got {
    uint64_t n, nsnap;
    uint64_t v[4096];
    bool from_snap[4096];
};

static void
collect(uint8_t type, const uint8_t *p, size_t len, bool from_snapshot, void *arg)
{
    struct got *g = arg;
    struct rec_reader r = {.p = p, .len = len};
    uint64_t v = 0;
    ck_assert_int_eq(type, 7);
    ck_assert(rec_get_u64(&r, &v));
    if (g->n < 4096) {
        g->v[g->n] = v;
        g->from_snap[g->n] = from_snapshot;
    }
    g->n++;
    g->nsnap += from_snapshot;
}

static void
open_store(struct fixture *f, enum store_sync sync, struct got *g, struct store_recovery *info)
{
    memset(f, 0, sizeof(*f));
    f->base = event_base_new();
    char err[256];
    struct store_opts o = {.dir = dir,
                           .sync = sync,
                           .max_backlog = 1 << 20,
                           .on_durable = on_durable,
                           .on_snapshot_done = on_snapshot_done,
                           .ud = f};
    f->st = store_open(f->base, &o, err, sizeof(err));
    ck_assert_msg(f->st != NULL, "%s", err);
    struct store_recovery dummy;
    static struct got none;
    memset(&none, 0, sizeof(none));
    ck_assert_int_eq(
        store_recover(f->st, collect, g ? g : &none, info ? info : &dummy, err, sizeof(err)), 0);
    f->durable = store_durable(f->st);
}

static void
close_store(struct fixture *f)
{
    store_close(f->st);
    event_base_free(f->base);
}

static uint64_t
append_u64(struct fixture *f, uint64_t v)
{
    struct rec_buf b = {0};
    rec_u64(&b, v);
    rec_bytes(&b, "some payload", 12);
    uint64_t seq = store_append(f->st, 7, b.p, b.len);
    rec_buf_free(&b);
    return seq;
}

static void
tick_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd, (void)what, (void)arg;
}

/* Runs the loop until cond holds or ms pass; returns cond. */
static bool
run_until(struct fixture *f, bool (*cond)(struct fixture *), int ms)
{
    struct event *tick = event_new(f->base, -1, EV_PERSIST, tick_cb, NULL);
    struct timeval tv = {0, 5000};
    event_add(tick, &tv);
    uint64_t until = lq_now_ms() + (uint64_t)ms;
    while (!cond(f) && lq_now_ms() < until) event_base_loop(f->base, EVLOOP_ONCE);
    event_free(tick);
    return cond(f);
}

static bool
all_durable(struct fixture *f)
{
    return f->durable == store_appended(f->st) && store_durable(f->st) == store_appended(f->st);
}

static bool
snapshot_done(struct fixture *f)
{
    return f->snap_done > 0;
}

static void
expect_sequence(const struct got *g, uint64_t from, uint64_t n)
{
    ck_assert_uint_eq(g->n, n);
    for (uint64_t i = 0; i < n && i < 4096; i++) ck_assert_uint_eq(g->v[i], from + i);
}

/* ---- records ---- */
START_TEST(test_rec_roundtrip_and_bounds)
{
    struct rec_buf b = {0};
    rec_u8(&b, 0xab);
    rec_u16(&b, 0x1234);
    rec_u32(&b, 0xdeadbeef);
    rec_u64(&b, 0x0102030405060708ull);
    rec_bytes(&b, "xyz", 3);
    ck_assert_uint_eq(b.len, 1 + 2 + 4 + 8 + 4 + 3);
    ck_assert_uint_eq(b.p[1], 0x34); /* little-endian */
    struct rec_reader r = {.p = b.p, .len = b.len};
    uint8_t u8;
    uint16_t u16;
    uint32_t u32, n;
    uint64_t u64;
    const uint8_t *p;
    ck_assert(rec_get_u8(&r, &u8) && u8 == 0xab);
    ck_assert(rec_get_u16(&r, &u16) && u16 == 0x1234);
    ck_assert(rec_get_u32(&r, &u32) && u32 == 0xdeadbeef);
    ck_assert(rec_get_u64(&r, &u64) && u64 == 0x0102030405060708ull);
    ck_assert(rec_get_bytes(&r, &p, &n) && n == 3 && memcmp(p, "xyz", 3) == 0);
    ck_assert(!rec_get_u8(&r, &u8)); /* at the end */
    ck_assert(r.bad);
    /* a length that runs past the end fails, and the failure sticks */
    struct rec_reader r2 = {.p = b.p + 15, .len = b.len - 15 - 1};
    ck_assert(!rec_get_bytes(&r2, &p, &n));
    ck_assert(!rec_get_u8(&r2, &u8));
    /* every truncation of the record fails somewhere, never reads past it */
    for (size_t cut = 0; cut < b.len; cut++) {
        uint8_t *copy = malloc(cut ? cut : 1);
        memcpy(copy, b.p, cut);
        struct rec_reader t = {.p = copy, .len = cut};
        bool ok = rec_get_u8(&t, &u8) && rec_get_u16(&t, &u16) && rec_get_u32(&t, &u32) &&
                  rec_get_u64(&t, &u64) && rec_get_bytes(&t, &p, &n);
        ck_assert(!ok);
        free(copy);
    }
    rec_buf_free(&b);
    ck_assert_uint_eq(store_crc32c(0, "123456789", 9), 0xe3069283u); /* the check value */
    ck_assert_uint_eq(store_crc32c(store_crc32c(0, "1234", 4), "56789", 5), 0xe3069283u);
    ck_assert_uint_eq(store_crc32c_sw(0, "123456789", 9), 0xe3069283u);
    /* the instruction and the tables agree at every length and alignment */
    uint8_t buf[300];
    for (size_t i = 0; i < sizeof(buf); i++) buf[i] = (uint8_t)(i * 131 + 7);
    for (size_t at = 0; at < 8; at++)
        for (size_t len = 0; len + at <= sizeof(buf); len += 13)
            ck_assert_uint_eq(store_crc32c(0x1234u, buf + at, len),
                              store_crc32c_sw(0x1234u, buf + at, len));
#ifdef __x86_64__
    ck_assert(store_crc32c_hw()); /* SSE4.2: every x86-64 CPU since 2008; the test runs it */
#endif
}
END_TEST

START_TEST(test_scan_prefix)
{
    struct rec_buf b = {0};
    for (uint64_t i = 1; i <= 3; i++) frame_put(&b, 5, i, "abcdef", 6);
    size_t one = FRAME_HDR + 6;
    ck_assert_uint_eq(store_scan(b.p, b.len, true, NULL, NULL), 3 * one);
    for (size_t cut = 0; cut <= b.len; cut++) { /* each cut in its own allocation: ASan sees */
        uint8_t *copy = malloc(cut ? cut : 1);
        memcpy(copy, b.p, cut);
        ck_assert_uint_eq(store_scan(copy, cut, true, NULL, NULL), cut / one * one);
        free(copy);
    }
    b.p[one + FRAME_HDR + 2] ^= 1; /* a flipped payload bit in the second frame */
    ck_assert_uint_eq(store_scan(b.p, b.len, true, NULL, NULL), one);
    b.p[one + FRAME_HDR + 2] ^= 1;
    b.p[one + 3] = 0xff; /* a length field past FRAME_MAX_LEN */
    ck_assert_uint_eq(store_scan(b.p, b.len, true, NULL, NULL), one);
    rec_buf_free(&b);
}
END_TEST

/* ---- append, durable, replay ---- */
static void
append_durable_recover(enum store_sync sync)
{
    make_dir();
    struct fixture f;
    open_store(&f, sync, NULL, NULL);
    for (uint64_t i = 1; i <= 1000; i++) {
        ck_assert_uint_eq(append_u64(&f, i), i);
        if (i % 100 == 0) event_base_loop(f.base, EVLOOP_NONBLOCK); /* a few batches */
    }
    ck_assert(run_until(&f, all_durable, 5000));
    struct store_stats s;
    store_get_stats(f.st, &s);
    ck_assert_uint_eq(s.durable, 1000);
    ck_assert_uint_eq(s.backlog_bytes, 0);
    ck_assert_uint_ge(s.batches, 1);
    ck_assert_uint_eq(s.journal_records, 1000);
    ck_assert(!s.failing);
    ck_assert(!store_backlogged(f.st));
    close_store(&f);

    static struct got g;
    memset(&g, 0, sizeof(g));
    struct store_recovery info;
    open_store(&f, sync, &g, &info);
    expect_sequence(&g, 1, 1000);
    ck_assert(!info.corrupt && !info.truncated_tail);
    ck_assert_uint_eq(info.segments, 1);
    ck_assert_uint_eq(append_u64(&f, 1001), 1001); /* goes on after the last */
    ck_assert(run_until(&f, all_durable, 5000));
    close_store(&f);
    ck_assert(exists(seg(1001))); /* a new segment after recovery */
    remove_dir();
}

START_TEST(test_append_durable_power)
{
    append_durable_recover(STORE_SYNC_POWER);
}
END_TEST

START_TEST(test_append_durable_process)
{
    append_durable_recover(STORE_SYNC_PROCESS);
}
END_TEST

static void
write_n(enum store_sync sync, uint64_t n)
{
    struct fixture f;
    open_store(&f, sync, NULL, NULL);
    uint64_t from = store_appended(f.st) + 1;
    for (uint64_t i = 0; i < n; i++) append_u64(&f, from + i);
    ck_assert(run_until(&f, all_durable, 5000));
    close_store(&f);
}

static void
append_bytes(const char *name, const void *p, size_t n)
{
    char path[512];
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    int fd = open(path, O_WRONLY | O_APPEND);
    ck_assert_int_ge(fd, 0);
    ck_assert_int_eq(write(fd, p, n), (ssize_t)n);
    close(fd);
}

static void
flip_byte(const char *name, off_t at)
{
    char path[512];
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    int fd = open(path, O_RDWR);
    uint8_t c;
    ck_assert_int_eq(pread(fd, &c, 1, at), 1);
    c ^= 0x40;
    ck_assert_int_eq(pwrite(fd, &c, 1, at), 1);
    close(fd);
}

START_TEST(test_torn_tail_truncated)
{
    make_dir();
    write_n(STORE_SYNC_POWER, 100);
    off_t good = file_size(seg(1));
    /* a torn record: a header that promises more than is there */
    struct rec_buf b = {0};
    frame_put(&b, 7, 101, "0123456789012345678901234567890123456789", 40);
    append_bytes(seg(1), b.p, b.len - 9);
    rec_buf_free(&b);
    static struct got g;
    memset(&g, 0, sizeof(g));
    struct store_recovery info;
    struct fixture f;
    open_store(&f, STORE_SYNC_POWER, &g, &info);
    expect_sequence(&g, 1, 100);
    ck_assert(info.truncated_tail);
    ck_assert(!info.corrupt);
    ck_assert_int_eq(file_size(seg(1)), good);
    close_store(&f);
    remove_dir();
}
END_TEST

/* two segments: a snapshot abandoned at 50 still starts a new one */
static void
two_segments(void)
{
    struct fixture f;
    open_store(&f, STORE_SYNC_POWER, NULL, NULL);
    for (uint64_t i = 1; i <= 50; i++) append_u64(&f, i);
    ck_assert_int_eq(store_snapshot_begin(f.st), 0);
    store_snapshot_end(f.st, false);
    for (uint64_t i = 51; i <= 80; i++) append_u64(&f, i);
    ck_assert(run_until(&f, all_durable, 5000));
    ck_assert(run_until(&f, snapshot_done, 5000));
    ck_assert(!f.snap_ok);
    close_store(&f);
    ck_assert(exists(seg(1)) && exists(seg(51)));
}

START_TEST(test_corrupt_segment_set_aside)
{
    make_dir();
    two_segments();
    off_t rec = file_size(seg(1)) / 50;
    flip_byte(seg(1), 19 * rec + FRAME_HDR + 1); /* record 20's payload */
    static struct got g;
    memset(&g, 0, sizeof(g));
    struct store_recovery info;
    struct fixture f;
    open_store(&f, STORE_SYNC_POWER, &g, &info);
    expect_sequence(&g, 1, 19);
    ck_assert(info.corrupt);
    ck_assert(!exists(seg(1)) && !exists(seg(51)));
    char bad[96];
    snprintf(bad, sizeof(bad), "%s.corrupt", seg(1));
    ck_assert(exists(bad));
    snprintf(bad, sizeof(bad), "%s.corrupt", seg(51));
    ck_assert(exists(bad));
    ck_assert_uint_eq(append_u64(&f, 20), 20); /* appends go on after the valid prefix */
    ck_assert(run_until(&f, all_durable, 5000));
    close_store(&f);
    remove_dir();
}
END_TEST

START_TEST(test_gap_between_segments_is_corruption)
{
    make_dir();
    two_segments();
    char from[512], to[512];
    snprintf(from, sizeof(from), "%s/%s", dir, seg(51));
    snprintf(to, sizeof(to), "%s/%s", dir, seg(60)); /* 51..59 missing */
    ck_assert_int_eq(rename(from, to), 0);
    write_n(STORE_SYNC_POWER, 0); /* just recover */
    ck_assert(!exists(seg(60)) && exists(seg(1)));
    remove_dir();
}
END_TEST

START_TEST(test_snapshot_compacts)
{
    make_dir();
    struct fixture f;
    open_store(&f, STORE_SYNC_POWER, NULL, NULL);
    for (uint64_t i = 1; i <= 100; i++) append_u64(&f, i);
    ck_assert_int_eq(store_snapshot_begin(f.st), 0);
    ck_assert_int_eq(store_snapshot_begin(f.st), -1); /* one at a time */
    ck_assert(store_snapshot_running(f.st));
    struct rec_buf b = {0};
    for (uint64_t i = 0; i < 10; i++) {
        b.len = 0;
        rec_u64(&b, 1000 + i);
        store_snapshot_add(f.st, 7, b.p, b.len);
        if (i == 4) event_base_loop(f.base, EVLOOP_NONBLOCK);
        append_u64(&f, 101 + i); /* the journal goes on meanwhile */
    }
    rec_buf_free(&b);
    store_snapshot_end(f.st, true);
    ck_assert(run_until(&f, snapshot_done, 5000));
    ck_assert(f.snap_ok);
    ck_assert(!store_snapshot_running(f.st));
    ck_assert_uint_eq(store_snapshot_backlog(f.st), 0);
    ck_assert(run_until(&f, all_durable, 5000));
    struct store_stats s;
    store_get_stats(f.st, &s);
    ck_assert(s.last_snapshot_at > 0);
    ck_assert_uint_gt(s.last_snapshot_bytes, 10 * FRAME_HDR);
    ck_assert_uint_eq(s.journal_records, 10);
    close_store(&f);
    ck_assert(!exists(seg(1)));
    ck_assert(exists(seg(101)));
    ck_assert(exists("snapshot-00000000000000000100.snap"));

    static struct got g;
    memset(&g, 0, sizeof(g));
    struct store_recovery info;
    open_store(&f, STORE_SYNC_POWER, &g, &info);
    ck_assert_uint_eq(info.snapshot_seq, 100);
    ck_assert_uint_eq(g.n, 20);
    ck_assert_uint_eq(g.nsnap, 10);
    for (int i = 0; i < 10; i++) {
        ck_assert(g.from_snap[i] && g.v[i] == 1000u + (unsigned)i);
        ck_assert(!g.from_snap[10 + i] && g.v[10 + i] == 101u + (unsigned)i);
    }
    ck_assert_uint_eq(append_u64(&f, 111), 111);
    close_store(&f);
    remove_dir();
}
END_TEST

/* The crash loop's lost QoS 2 message: a snapshot's last slice shows the state that
 * records appended in the same loop turn made, still in the loop's open batch. The
 * snapshot was committed before the writer had them: a crash between the two kept the
 * snapshot's half of a change and lost the journal's. Now the snapshot counts only
 * after those records are durable (no loop turn here: nothing else hands them over). */
static void
snapshot_after_open_batch(enum store_sync sync)
{
    make_dir();
    struct fixture f;
    open_store(&f, sync, NULL, NULL);
    for (uint64_t i = 1; i <= 10; i++) append_u64(&f, i);
    ck_assert(run_until(&f, all_durable, 5000));
    ck_assert_int_eq(store_snapshot_begin(f.st), 0);
    uint64_t last = 0;
    for (uint64_t i = 11; i <= 15; i++) last = append_u64(&f, i); /* the open batch */
    struct rec_buf b = {0};
    rec_u64(&b, 1000);
    store_snapshot_add(f.st, 7, b.p, b.len); /* the slice that shows them */
    rec_buf_free(&b);
    store_snapshot_end(f.st, true);
    ck_assert(store_snapshot_wait(f.st));
    ck_assert_uint_ge(store_durable(f.st), last);
    close_store(&f);
    remove_dir();
}

START_TEST(test_snapshot_after_open_batch_power)
{
    snapshot_after_open_batch(STORE_SYNC_POWER);
}
END_TEST

START_TEST(test_snapshot_after_open_batch_process)
{
    snapshot_after_open_batch(STORE_SYNC_PROCESS);
}
END_TEST

static void
write_file(const char *name, const void *p, size_t n)
{
    char path[512];
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    ck_assert_int_ge(fd, 0);
    ck_assert_int_eq(write(fd, p, n), (ssize_t)n);
    close(fd);
}

START_TEST(test_incomplete_snapshot_ignored)
{
    make_dir();
    write_n(STORE_SYNC_POWER, 100);
    /* snapshot-50.snap: the header and a record, no footer; snapshot-60.tmp: half done */
    struct rec_buf b = {0}, hdr = {0}, rec = {0};
    rec_u8(&hdr, SNAP_HDR_SUBTYPE);
    rec_u64(&hdr, 50);
    frame_put(&b, 0, 0, hdr.p, hdr.len);
    rec_u64(&rec, 999);
    frame_put(&b, 7, 1, rec.p, rec.len);
    write_file("snapshot-00000000000000000050.snap", b.p, b.len);
    write_file("snapshot-00000000000000000060.tmp", b.p, b.len);
    rec_buf_free(&b);
    rec_buf_free(&hdr);
    rec_buf_free(&rec);
    static struct got g;
    memset(&g, 0, sizeof(g));
    struct store_recovery info;
    struct fixture f;
    open_store(&f, STORE_SYNC_POWER, &g, &info);
    expect_sequence(&g, 1, 100); /* all from the journal, which is still there */
    ck_assert_uint_eq(info.snapshot_seq, 0);
    ck_assert_uint_eq(g.nsnap, 0);
    ck_assert(!exists("snapshot-00000000000000000060.tmp"));
    ck_assert(!exists("snapshot-00000000000000000050.snap"));
    ck_assert(exists("snapshot-00000000000000000050.snap.corrupt"));
    close_store(&f);
    remove_dir();
}
END_TEST

START_TEST(test_lock_refused)
{
    make_dir();
    struct fixture f;
    open_store(&f, STORE_SYNC_POWER, NULL, NULL);
    char err[256] = "", want[256];
    struct store_opts o = {.dir = dir};
    ck_assert_ptr_null(store_open(f.base, &o, err, sizeof(err)));
    snprintf(want, sizeof(want), "persistence_location %s is in use by another lunamq (pid %ld)",
             dir, (long)getpid());
    ck_assert_str_eq(err, want);
    close_store(&f);
    write_n(STORE_SYNC_POWER, 1); /* released on close */
    remove_dir();
}
END_TEST

/* ---- write errors: a child under RLIMIT_FSIZE (exit status: which step failed) ---- */
static bool
is_failing(struct fixture *f)
{
    return f->failing_calls > 0 && store_failing(f->st);
}

static bool
not_failing(struct fixture *f)
{
    return !store_failing(f->st) && all_durable(f);
}

static int
fsize_child(void)
{
    signal(SIGXFSZ, SIG_IGN);
    struct rlimit rl;
    getrlimit(RLIMIT_FSIZE, &rl);
    rl.rlim_cur = 64 << 10;
    if (setrlimit(RLIMIT_FSIZE, &rl) < 0) return 10;
    struct fixture f;
    open_store(&f, STORE_SYNC_POWER, NULL, NULL);
    for (uint64_t i = 1; i <= 16; i++) append_u64(&f, i);
    if (!run_until(&f, all_durable, 5000)) return 11;
    static uint8_t big[100 << 10];
    store_append(f.st, 7, big, sizeof(big)); /* past the limit: EFBIG */
    if (!run_until(&f, is_failing, 5000)) return 12;
    if (f.durable != 16 || store_durable(f.st) != 16) return 13;
    usleep(1200 * 1000); /* a retry fails too */
    event_base_loop(f.base, EVLOOP_NONBLOCK);
    struct store_stats s;
    store_get_stats(f.st, &s);
    if (!s.failing || s.errors < 2 || s.durable != 16) return 14;
    rl.rlim_cur = rl.rlim_max; /* space comes back */
    if (setrlimit(RLIMIT_FSIZE, &rl) < 0) return 15;
    if (!run_until(&f, not_failing, 5000)) return 16;
    if (f.durable != 17) return 17;
    append_u64(&f, 18); /* written at once again, not at the next retry */
    if (!run_until(&f, all_durable, 700)) return 18;
    close_store(&f);
    return 0;
}

START_TEST(test_write_error_fails_then_recovers)
{
    make_dir();
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) _exit(fsize_child());
    int status;
    ck_assert_int_eq(waitpid(pid, &status, 0), pid);
    ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0, "child step %d",
                  WIFEXITED(status) ? WEXITSTATUS(status) : -1);
    /* replay: 1..16, the cut-off partial write, then 17 and 18 from the retried segment */
    static struct got g;
    memset(&g, 0, sizeof(g));
    struct store_recovery info;
    struct fixture f;
    open_store(&f, STORE_SYNC_POWER, NULL, &info);
    ck_assert(!info.corrupt);
    ck_assert_uint_eq(store_appended(f.st), 18);
    close_store(&f);
    remove_dir();
}
END_TEST

/* ---- crash points: a child aborts there, the parent recovers ---- */
static bool
has_snapshot_done(struct fixture *f)
{
    return f->snap_done > 0;
}

static void
crash_child(const char *point)
{
    struct rlimit no_core = {0, 0};
    setrlimit(RLIMIT_CORE, &no_core);
    setenv("LUNAMQ_CRASH_AT", point, 1); /* read at the first crash point: none ran yet */
    struct fixture f;
    open_store(&f, STORE_SYNC_POWER, NULL, NULL);
    for (uint64_t i = 1; i <= 20; i++) append_u64(&f, i);
    run_until(&f, all_durable, 5000); /* after-write aborts in here */
    store_snapshot_begin(f.st);
    struct rec_buf b = {0};
    rec_u64(&b, 500);
    for (int i = 0; i < 5; i++) store_snapshot_add(f.st, 7, b.p, b.len);
    rec_buf_free(&b);
    store_snapshot_end(f.st, true);
    run_until(&f, has_snapshot_done, 5000); /* the snapshot points abort in here */
    _exit(0);
}

static void
crash_and_recover(const char *point, uint64_t want_records, uint64_t want_snapshot)
{
    make_dir();
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) crash_child(point);
    int status;
    ck_assert_int_eq(waitpid(pid, &status, 0), pid);
    ck_assert_msg(WIFSIGNALED(status) && WTERMSIG(status) == SIGABRT, "%s: no abort", point);
    static struct got g;
    memset(&g, 0, sizeof(g));
    struct store_recovery info;
    struct fixture f;
    open_store(&f, STORE_SYNC_POWER, &g, &info);
    ck_assert_uint_eq(g.n, want_records);
    ck_assert_uint_eq(info.snapshot_seq, want_snapshot);
    ck_assert(!info.corrupt);
    ck_assert(!exists("snapshot-00000000000000000020.tmp"));
    close_store(&f);
    remove_dir();
}

START_TEST(test_crash_points)
{
    crash_and_recover("after-write", 20, 0);      /* written, not synced: the kernel has it */
    crash_and_recover("mid-snapshot", 20, 0);     /* the .tmp is dropped, the journal stays */
    crash_and_recover("snapshot-renamed", 5, 20); /* the snapshot counts; old segments go */
}
END_TEST

START_TEST(test_backlogged)
{
    make_dir();
    struct fixture f;
    open_store(&f, STORE_SYNC_POWER, NULL, NULL);
    static uint8_t big[4096];
    for (int i = 0; i < 300; i++) store_append(f.st, 7, big, sizeof(big)); /* > 1 MiB */
    ck_assert(store_backlogged(f.st));
    ck_assert(run_until(&f, all_durable, 5000));
    ck_assert(!store_backlogged(f.st));
    close_store(&f);
    remove_dir();
}
END_TEST

/* ---- figures ---- */
static double
now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* appends in bursts of 64 per loop iteration for a second: how many became durable */
static void
bench_mode(enum store_sync sync, const char *name)
{
    struct fixture f;
    open_store(&f, sync, NULL, NULL);
    double t0 = now_s();
    uint64_t v = 0;
    while (now_s() - t0 < 1.0) {
        for (int i = 0; i < 64 && !store_backlogged(f.st); i++) append_u64(&f, ++v);
        event_base_loop(f.base, EVLOOP_NONBLOCK);
    }
    ck_assert(run_until(&f, all_durable, 5000));
    double dt = now_s() - t0;
    struct store_stats s;
    store_get_stats(f.st, &s);
    printf("store bench %s: %.0f appends made durable/s, %" PRIu64 " batches, fsync p50 %u us "
           "p99 %u us\n",
           name, (double)s.durable / dt, s.batches, s.fsync_p50_us, s.fsync_p99_us);
    close_store(&f);
}

#if defined(__SANITIZE_ADDRESS__)
#define BENCH_RECORDS 100000
#else
#define BENCH_RECORDS 1000000
#endif

static void
count_only(uint8_t type, const uint8_t *p, size_t len, bool from_snapshot, void *arg)
{
    (void)type, (void)p, (void)len, (void)from_snapshot;
    ++*(uint64_t *)arg;
}

START_TEST(test_bench)
{
    make_dir();
    bench_mode(STORE_SYNC_POWER, "power");
    remove_dir();
    make_dir();
    bench_mode(STORE_SYNC_PROCESS, "process");
    /* recovery: a snapshot of N records plus N more in the journal */
    struct fixture f;
    open_store(&f, STORE_SYNC_PROCESS, NULL, NULL);
    uint64_t base = store_appended(f.st);
    ck_assert_int_eq(store_snapshot_begin(f.st), 0);
    uint8_t payload[32] = {0};
    for (int i = 0; i < BENCH_RECORDS; i++) store_snapshot_add(f.st, 7, payload, sizeof(payload));
    store_snapshot_end(f.st, true);
    ck_assert(store_snapshot_wait(f.st));
    for (int i = 0; i < BENCH_RECORDS; i++) {
        store_append(f.st, 7, payload, sizeof(payload));
        if (i % 1000 == 0) event_base_loop(f.base, EVLOOP_NONBLOCK);
    }
    ck_assert(run_until(&f, all_durable, 20000));
    close_store(&f);
    char err[256];
    struct store_opts o = {.dir = dir};
    struct event_base *eb = event_base_new();
    struct store *st = store_open(eb, &o, err, sizeof(err));
    ck_assert_ptr_nonnull(st);
    uint64_t n = 0;
    struct store_recovery info;
    ck_assert_int_eq(store_recover(st, count_only, &n, &info, err, sizeof(err)), 0);
    ck_assert_uint_eq(n, 2 * BENCH_RECORDS);
    ck_assert_uint_eq(info.snapshot_seq, base);
    printf("store bench recovery: %d snapshot + %d journal records (%.1f MB) read in %.3f s\n",
           BENCH_RECORDS, BENCH_RECORDS, (double)info.bytes / 1e6, info.seconds);
    store_close(st);
    event_base_free(eb);
    remove_dir();
}
END_TEST

Suite *
suite_store(void)
{
    Suite *s = suite_create("store");
    TCase *tc = tcase_create("journal");
    tcase_set_timeout(tc, 30);
    tcase_add_test(tc, test_rec_roundtrip_and_bounds);
    tcase_add_test(tc, test_scan_prefix);
    tcase_add_test(tc, test_append_durable_power);
    tcase_add_test(tc, test_append_durable_process);
    tcase_add_test(tc, test_torn_tail_truncated);
    tcase_add_test(tc, test_corrupt_segment_set_aside);
    tcase_add_test(tc, test_gap_between_segments_is_corruption);
    tcase_add_test(tc, test_snapshot_compacts);
    tcase_add_test(tc, test_snapshot_after_open_batch_power);
    tcase_add_test(tc, test_snapshot_after_open_batch_process);
    tcase_add_test(tc, test_incomplete_snapshot_ignored);
    tcase_add_test(tc, test_lock_refused);
    tcase_add_test(tc, test_write_error_fails_then_recovers);
    tcase_add_test(tc, test_crash_points);
    tcase_add_test(tc, test_backlogged);
    suite_add_tcase(s, tc);
    TCase *bench = tcase_create("bench");
    tcase_set_timeout(bench, 120);
    tcase_add_test(bench, test_bench);
    suite_add_tcase(s, bench);
    return s;
}
