/* SPDX-License-Identifier: MIT
 *
 * store internals shared by the files of broker/store/ only: the frame format, the
 * scanner that finds a buffer's valid prefix, the store object with its writer
 * thread's queue, and the helpers recovery and snapshots share. */
#ifndef LUNAMQ_STORE_INT_H
#define LUNAMQ_STORE_INT_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "store.h"

/* A frame: u32 payload length, u32 CRC32C over type, seq and payload, u8 type,
 * u64 seq, payload; little-endian. */
#define FRAME_HDR        17u
#define FRAME_CRC_AT     8u           /* the CRC covers from here to the end of the payload */
#define FRAME_MAX_LEN    (256u << 20) /* a longer length field is a bad frame */
#define SNAP_HDR_SUBTYPE 1            /* type-0 payload: subtype byte, then u64 */
#define SNAP_END_SUBTYPE 2

void frame_put(struct rec_buf *b, uint8_t type, uint64_t seq, const void *p, size_t len);
/* The loop's frames leave the CRC to the writer thread (frames_seal, before writing:
 * the loop is where time is short): a buffer of whole frames made by frame_put_unsealed */
void frame_put_unsealed(struct rec_buf *b, uint8_t type, uint64_t seq, const void *p, size_t len);
void frames_seal(uint8_t *p, size_t len);

/* Called for every good frame of a buffer; return false to stop before it (the prefix
 * then ends where this frame starts). */
typedef bool (*frame_fn)(uint8_t type, uint64_t seq, const uint8_t *p, size_t len, void *arg);
/* Walks the frames of one in-memory buffer (a segment or a snapshot) and returns the
 * length of its valid prefix: whole frames with a sane length and a matching CRC, up
 * to the first that is not (or that fn refuses). check_crc false skips the CRC for a
 * second pass over bytes already checked. fn may be NULL. Never reads past len. */
size_t store_scan(const uint8_t *p, size_t len, bool check_crc, frame_fn fn, void *arg);

/* The writer's queue: what the loop hands over, processed in order. */
enum item_kind {
    ITEM_JOURNAL,    /* records [first, last] in buf */
    ITEM_ROTATE,     /* later records go to a new segment (a snapshot begins) */
    ITEM_SNAP_BEGIN, /* open snapshot-<seq>.tmp */
    ITEM_SNAP_DATA,  /* snapshot frames in buf */
    ITEM_SNAP_END,   /* ok: finish, rename, compact; otherwise drop the .tmp */
};
struct item {
    struct item *next;
    enum item_kind kind;
    bool ok;
    uint64_t first, last; /* ITEM_JOURNAL; last is the snapshot's seq for SNAP_BEGIN */
    struct rec_buf buf;
};

struct store {
    struct store *self; /* for const getters that take the lock */
    struct event_base *base;
    struct store_opts o;
    char *dir;
    int dirfd, lockfd;

    /* loop thread only */
    struct rec_buf open; /* records not yet handed to the writer */
    uint64_t open_first, appended;
    uint64_t appended_bytes;
    struct rec_buf snap_open; /* snapshot frames not yet handed over */
    uint64_t snap_seq, snap_records, snap_added;
    bool snap_running, snap_ended;
    struct event *handoff_ev, *notify_ev;
    bool handoff_armed;
    uint64_t durable_told;
    bool failing_told;
    bool recovered;

    /* shared with the writer, under mu */
    pthread_mutex_t mu;
    pthread_cond_t cv;       /* writer: work arrived or stop */
    pthread_cond_t progress; /* waiters: durable moved, snapshot done */
    struct item *todo, **todo_tail;
    struct item *spare; /* written journal items, their buffers kept for the next batch */
    unsigned nspare;
    bool stop;
    bool snap_done; /* a snapshot result waits for the loop */
    bool snap_done_ok;
    struct log_line *log_lines; /* the writer's, for the loop to log (newest first) */
    struct store_stats stats;   /* the writer's part: errors, batches, journal, snapshot */
    uint32_t fsync_us[1024];
    uint32_t fsync_n;
    pthread_t thread;
    bool thread_started;
    int pipe[2]; /* writer -> loop: "look at durable, failing, snapshot" */

    /* written by the writer, read anywhere */
    _Atomic uint64_t durable;
    _Atomic uint64_t durable_bytes;
    _Atomic uint64_t snap_written;
    _Atomic bool failing;
    _Atomic bool notify_pending; /* a byte is in the pipe the loop has not read */

    /* writer thread only */
    struct writer *w;
};

/* store.c */
/* Items the writer is done with: a few journal buffers are kept for the loop to fill
 * again (no growing a new one from nothing for every batch), the rest freed. */
void store_recycle(struct store *st, struct item *list);
void store_defer_log(struct store *st, unsigned level, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
void store_notify_loop(struct store *st);
int store_fsync_dir(struct store *st);
void store_segment_name(char *out, size_t n, uint64_t first);
void store_snapshot_name(char *out, size_t n, uint64_t seq, const char *ext);

/* writer.c: the thread */
void *writer_main(void *arg);
struct writer *writer_new(struct store *st, uint64_t journal_bytes, uint64_t journal_records);
void writer_free(struct writer *w);
void writer_snapshot_done(struct writer *w); /* the journal before it is gone: stats */
int store_write_all(int fd, const uint8_t *p, size_t n);
/* snapshot.c: the writer's snapshot steps */
struct snap_writer;
void snap_item(struct store *st, struct snap_writer **sw, struct item *it);
void snap_writer_free(struct snap_writer *sw);
/* deletes journal-<first> with first <= seq and snapshot-<s> with s < seq (writer,
 * after a snapshot; recovery) */
void store_remove_older(struct store *st, uint64_t seq);
/* "journal", "log" and journal-<20 digits>.log: true with the digits in seq */
bool store_parse_name(const char *name, const char *kind, const char *ext, uint64_t *seq);

#endif
