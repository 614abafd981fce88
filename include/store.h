/* SPDX-License-Identifier: MIT
 *
 * store: the durable journal behind `persistence true`. An append-only log of
 * records (length, CRC32C, type, sequence number, payload), written by one writer
 * thread with natural group commit: everything appended while the last fdatasync ran
 * goes into the next one. The event-loop thread only encodes records into memory and
 * is told, through on_durable, up to which sequence number the disk has them.
 *
 * The store knows nothing of sessions or messages: a record is a type byte and an
 * opaque payload (see the rec_* helpers below to build and read one). The session
 * layer (session/persist.c) says what the records mean, replays them at start-up and
 * feeds a snapshot of its live state back in when the journal is compacted.
 *
 * Files in the directory:
 *   lunamq.lock            flock()ed while a broker uses the directory (pid inside)
 *   journal-<first>.log    segments; <first> is the 20-digit sequence of the first
 *   snapshot-<seq>.snap    live state as of journal sequence <seq>; replay goes on
 *                          with the segments after it
 *   snapshot-<seq>.tmp     a snapshot being written (deleted at recovery)
 *   journal-<first>.log.new  a segment rewritten after a disk error, until synced
 *   *.corrupt              set aside by recovery, kept for a human to look at
 * Recovery = the newest complete snapshot + the journal after it. A torn tail of the
 * last segment is cut off (it was never acknowledged); a bad record elsewhere stops
 * replay there (logged with file and offset) and that segment and the later ones are
 * renamed *.corrupt: the broker starts with the valid prefix, and the caller writes a
 * fresh snapshot before anything else (store_snapshot_begin/add/end, then
 * store_snapshot_wait), since until then the prefix is only in the .corrupt files.
 *
 * Threads: every function here is for the loop thread. The writer thread does all
 * the disk work after store_recover; its log lines go out on the loop thread.
 */
#ifndef LUNAMQ_STORE_H
#define LUNAMQ_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct event_base;
struct store;

enum store_sync {
    STORE_SYNC_POWER,   /* fdatasync before a record counts as durable */
    STORE_SYNC_PROCESS, /* write() is enough; fdatasync once a second */
};

struct store_opts {
    const char *dir;
    enum store_sync sync;
    /* appended and not yet durable: past this store_backlogged() says so */
    size_t max_backlog;
    /* called on the loop thread when store_durable() moved (batch done) or the error
     * state changed */
    void (*on_durable)(uint64_t durable, void *ud);
    /* a snapshot finished (ok) or was abandoned; on the loop thread */
    void (*on_snapshot_done)(bool ok, void *ud);
    void *ud;
};

/* Lock and open dir (made if missing, one level). NULL with a message in err when the
 * directory is unusable or locked by another process ("persistence_location DIR is in
 * use by another lunamq (pid N)"). Nothing but the lock file is written before
 * store_recover. */
struct store *store_open(struct event_base *base, const struct store_opts *o, char *err,
                         size_t errlen);
/* Waits for the writer to make everything appended durable (bounded: 5 s), stops
 * it, unlocks. NULL is a no-op. */
void store_close(struct store *st);

/* Replay: fn is called for every valid record, the snapshot's first (from_snapshot
 * true), then the journal's, in order. Returns 0, or -1 when the directory cannot be
 * read at all (err). Call it once, before anything is appended: it starts the writer,
 * and appends then go to a new segment at the last sequence + 1. */
struct store_recovery {
    uint64_t records, bytes;
    uint64_t snapshot_seq; /* 0: none */
    uint32_t segments;
    bool truncated_tail; /* the last segment ended in a torn record: cut off */
    bool corrupt;        /* a bad record before the end: replay stopped there */
    double seconds;
};
typedef void (*store_record_fn)(uint8_t type, const uint8_t *p, size_t len, bool from_snapshot,
                                void *arg);
int store_recover(struct store *st, store_record_fn fn, void *arg, struct store_recovery *info,
                  char *err, size_t errlen);

/* Append one record to the open batch (memory only). Returns its sequence number
 * (the first is 1). Records too large (> 256 MiB) abort: callers bound them. type is
 * 1..255: 0 is the store's own (replay never passes it to fn). The batch goes to the
 * writer at the end of the event-loop iteration. */
uint64_t store_append(struct store *st, uint8_t type, const void *p, size_t len);
uint64_t store_appended(const struct store *st); /* the last sequence appended */
uint64_t store_durable(const struct store *st);  /* everything up to it is on disk */
bool store_backlogged(const struct store *st);   /* appended, not durable: over max_backlog */
/* The writer failed (write, fsync, disk full): nothing more becomes durable until a
 * retry succeeds (every second). */
bool store_failing(const struct store *st);

/* Compaction. store_snapshot_begin starts a new journal segment and a snapshot file;
 * the caller then feeds the live state with store_snapshot_add, in slices, and ends
 * with store_snapshot_end (ok false abandons it). When the writer has the snapshot
 * on disk (fsync, rename, directory fsync) the segments before it are deleted and
 * on_snapshot_done is called (exactly once per snapshot begun). Returns -1 when a
 * snapshot is already under way (or before store_recover). */
int store_snapshot_begin(struct store *st);
void store_snapshot_add(struct store *st, uint8_t type, const void *p, size_t len);
void store_snapshot_end(struct store *st, bool ok);
bool store_snapshot_running(const struct store *st);
/* Start-up only (recovery found a corrupt segment): block until the snapshot just
 * ended is on disk. Returns its success; on_snapshot_done has been called for it. */
bool store_snapshot_wait(struct store *st);
size_t store_snapshot_backlog(const struct store *st); /* bytes added, not yet written */

struct store_stats {
    bool failing;
    uint64_t errors; /* write/fsync failures */
    uint64_t appended, durable;
    uint64_t backlog_bytes;              /* appended, not yet durable */
    uint64_t journal_bytes;              /* segments since the last snapshot */
    uint64_t journal_records;            /* records in them */
    uint64_t batches;                    /* made durable since start */
    double last_snapshot_at;             /* wall clock, 0: none yet */
    double last_snapshot_seconds;        /* how long it took */
    uint64_t last_snapshot_bytes;        /* its size */
    uint32_t fsync_p50_us, fsync_p99_us; /* over the last 1024 syncs */
};
void store_get_stats(const struct store *st, struct store_stats *out);

/* Test builds and tests: LUNAMQ_CRASH_AT=<point> makes the process abort() there.
 * Points: after-write (before fdatasync), mid-snapshot, snapshot-renamed (before the
 * directory fsync), recovery. */
void store_crash_point(const char *name);

/* ---- records: little-endian fields, appended to a growable buffer ---- */
struct rec_buf {
    uint8_t *p;
    size_t len, cap;
};
void rec_u8(struct rec_buf *b, uint8_t v);
void rec_u16(struct rec_buf *b, uint16_t v);
void rec_u32(struct rec_buf *b, uint32_t v);
void rec_u64(struct rec_buf *b, uint64_t v);
void rec_bytes(struct rec_buf *b, const void *p, size_t n); /* u32 length, then the bytes */
void rec_buf_free(struct rec_buf *b);

/* Reading: every get fails (returns false, and keeps failing) past the end. */
struct rec_reader {
    const uint8_t *p;
    size_t len, at;
    bool bad;
};
bool rec_get_u8(struct rec_reader *r, uint8_t *v);
bool rec_get_u16(struct rec_reader *r, uint16_t *v);
bool rec_get_u32(struct rec_reader *r, uint32_t *v);
bool rec_get_u64(struct rec_reader *r, uint64_t *v);
/* points into the record; n bytes */
bool rec_get_bytes(struct rec_reader *r, const uint8_t **p, uint32_t *n);

/* CRC32C (Castagnoli), as the journal uses it: the CPU's instruction where it has one
 * (store_crc32c_hw() says), else the tables of store_crc32c_sw. */
uint32_t store_crc32c(uint32_t crc, const void *p, size_t n);
uint32_t store_crc32c_sw(uint32_t crc, const void *p, size_t n);
bool store_crc32c_hw(void);

#endif
