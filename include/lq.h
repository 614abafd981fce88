/* SPDX-License-Identifier: MIT
 *
 * lq: the few process-wide helpers every module may use: byte views, allocation
 * that aborts on exhaustion, logging and the monotonic clock. Nothing here knows
 * about MQTT, sockets or sessions. */
#ifndef LUNAMQ_LQ_H
#define LUNAMQ_LQ_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define LUNAMQ_VERSION "0.1.0"

/* A borrowed view of bytes (wire strings are length-prefixed: never strlen them). */
struct lq_bytes {
    const uint8_t *p;
    size_t len;
};

/* Allocation: out-of-memory logs and aborts; memory is bounded by limits instead. */
void *lq_xmalloc(size_t n);
void *lq_xcalloc(size_t nmemb, size_t n);
void *lq_xrealloc(void *p, size_t n);
char *lq_xstrdup(const char *s);
char *lq_xstrndup(const char *s, size_t n);
/* Around loading a large state (the persistence replay): grow the heap in large steps of
 * huge pages; step() often (it is cheap) to mark each new step. */
void lq_heap_bulk_begin(void);
void lq_heap_bulk_step(void);
void lq_heap_bulk_end(void);
/* Around loading a large state (the persistence replay): grow the heap in large steps of
 * huge pages; step() often (it is cheap) to mark each new step. */
void lq_heap_bulk_begin(void);
void lq_heap_bulk_step(void);
void lq_heap_bulk_end(void);

/* Log levels, named like mosquitto's log_type values. They are bits so that
 * log_type can select any set of them. */
enum lq_log_level {
    LQ_LOG_ERR = 1 << 0,         /* error */
    LQ_LOG_WARNING = 1 << 1,     /* warning */
    LQ_LOG_NOTICE = 1 << 2,      /* notice */
    LQ_LOG_INFO = 1 << 3,        /* information */
    LQ_LOG_DEBUG = 1 << 4,       /* debug */
    LQ_LOG_SUBSCRIBE = 1 << 5,   /* subscribe */
    LQ_LOG_UNSUBSCRIBE = 1 << 6, /* unsubscribe */
};
#define LQ_LOG_DEFAULT (LQ_LOG_ERR | LQ_LOG_WARNING | LQ_LOG_NOTICE | LQ_LOG_INFO)
#define LQ_LOG_ALL     0x7f

enum lq_log_dest {
    LQ_DEST_STDERR = 1 << 0,
    LQ_DEST_STDOUT = 1 << 1,
    LQ_DEST_FILE = 1 << 2,
    LQ_DEST_SYSLOG = 1 << 3,
};

/* The log sink is process-wide state (with the clock cache, the only such).
 * lq_log_open may be called again (SIGHUP); file_path is used with LQ_DEST_FILE.
 * Returns 0, or -1 with errno when the file cannot be opened (old sink kept). */
int lq_log_open(unsigned types, unsigned dests, const char *file_path);
/* -v: log every type from now on, whatever later lq_log_open calls say. */
void lq_log_set_verbose(bool on);
void lq_log_close(void);
extern unsigned lq_log_types; /* read by lq_log_enabled() on hot paths */
static inline bool
lq_log_enabled(unsigned level)
{
    return (lq_log_types & level) != 0;
}
void lq_log(unsigned level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* How lines look: log_timestamp (false: no time), log_timestamp_format (strftime, in
 * local time, as mosquitto; NULL: ISO 8601 UTC with milliseconds, or with mosquitto the
 * Unix time), log_format mosquitto ("TIME: " before the message, as mosquitto). */
void lq_log_set_format(bool timestamp, const char *ts_format, bool mosquitto);
bool lq_log_mosquitto(void); /* log_format mosquitto */
/* A line in mosquitto's words ("New connection from ..."): no level name before it,
 * whatever the format, so that its parsers and fail2ban filters read it as theirs. */
void lq_log_as_mosquitto(unsigned level, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
/* Client ids, user names and topics may hold any character but U+0000: for logs and
 * text meant for people, control characters are written escaped (\n, \r, \t, \xNN), so
 * that a client can neither forge nor split lines, nor send terminal escapes. out gets at
 * most outlen - 1 bytes and a NUL; 4 * strlen(in) + 1 always holds all of it. */
void lq_escape_controls(const char *in, char *out, size_t outlen);
/* For what can happen on every message: at most one line a second per limit; the next
 * line says how many were left out. Zeroed means nothing logged yet. */
struct lq_log_limit {
    uint64_t last_ms, unlogged;
};
void lq_log_limited(struct lq_log_limit *ll, unsigned level, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Monotonic milliseconds, and wall-clock seconds. */
uint64_t lq_now_ms(void);
/* Move lq_now_ms forward by ms: for unit tests of deadlines minutes away. */
void lq_clock_skip_ms(uint64_t ms);
double lq_wall_time(void);

#endif
