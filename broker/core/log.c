/* SPDX-License-Identifier: MIT
 *
 * log: the process-wide log sink. One event, one line: time, level, message.
 * Destinations (log_dest) are any of stderr, stdout, a file and syslog. With
 * log_format mosquitto the time is mosquitto's ("1700000000: ") and the lines that
 * say what mosquitto would say come without a level name, as mosquitto writes them. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <syslog.h>
#include <time.h>
#include <sys/time.h>

#include "lq.h"

unsigned lq_log_types = LQ_LOG_DEFAULT;
static unsigned log_dests = LQ_DEST_STDERR;
static FILE *log_file;

static bool verbose;          /* -v: everything, whatever the file says, across reloads too */
static bool with_time = true; /* log_timestamp */
static char *time_format;     /* log_timestamp_format (strftime, local time); NULL: default */
static bool mosquitto_shape;  /* log_format mosquitto */

void
lq_log_set_verbose(bool on)
{
    verbose = on;
}

int
lq_log_open(unsigned types, unsigned dests, const char *file_path)
{
    FILE *f = NULL;
    if ((dests & LQ_DEST_FILE) && file_path) {
        f = fopen(file_path, "a");
        if (!f) return -1;
        setvbuf(f, NULL, _IOLBF, 0);
    }
    if (log_file) fclose(log_file);
    log_file = f;
    if ((dests & LQ_DEST_SYSLOG) && !(log_dests & LQ_DEST_SYSLOG))
        openlog("lunamq", LOG_PID | LOG_NDELAY, LOG_DAEMON);
    lq_log_types = types | (verbose ? LQ_LOG_ALL : 0);
    log_dests = dests;
    return 0;
}

void
lq_log_close(void)
{
    if (log_file) fclose(log_file);
    log_file = NULL;
    if (log_dests & LQ_DEST_SYSLOG) closelog();
    log_dests = LQ_DEST_STDERR;
    lq_log_set_format(true, NULL, false);
}

void
lq_log_set_format(bool timestamp, const char *ts_format, bool mosquitto)
{
    with_time = timestamp;
    free(time_format);
    time_format = ts_format ? lq_xstrdup(ts_format) : NULL;
    mosquitto_shape = mosquitto;
    tzset(); /* the local time of log_timestamp_format: TZ as it is now */
}

bool
lq_log_mosquitto(void)
{
    return mosquitto_shape;
}

static const char *
level_name(unsigned level)
{
    switch (level) {
    case LQ_LOG_ERR: return "error";
    case LQ_LOG_WARNING: return "warning";
    case LQ_LOG_NOTICE: return "notice";
    case LQ_LOG_INFO: return "info";
    case LQ_LOG_DEBUG: return "debug";
    case LQ_LOG_SUBSCRIBE: return "subscribe";
    case LQ_LOG_UNSUBSCRIBE: return "unsubscribe";
    default: return "log";
    }
}

static int
syslog_priority(unsigned level)
{
    switch (level) {
    case LQ_LOG_ERR: return LOG_ERR;
    case LQ_LOG_WARNING: return LOG_WARNING;
    case LQ_LOG_NOTICE: return LOG_NOTICE;
    case LQ_LOG_DEBUG: return LOG_DEBUG;
    default: return LOG_INFO;
    }
}

void
lq_escape_controls(const char *in, char *out, size_t outlen)
{
    size_t o = 0;
    for (const unsigned char *p = (const unsigned char *)in; *p && o + 4 < outlen; p++) {
        if (*p >= 0x20 && *p != 0x7f) {
            out[o++] = (char)*p;
            continue;
        }
        char e = *p == '\n' ? 'n' : *p == '\r' ? 'r' : *p == '\t' ? 't' : 0;
        if (e) {
            out[o++] = '\\';
            out[o++] = e;
        } else {
            o += (size_t)snprintf(out + o, outlen - o, "\\x%02x", *p);
        }
    }
    out[o] = '\0';
}

/* What comes before the message: the time and the level name, as configured. */
static void
line_prefix(unsigned level, bool bare, char *out, size_t outlen)
{
    size_t o = 0;
    out[0] = '\0';
    if (with_time) {
        struct timeval tv;
        gettimeofday(&tv, NULL);
        struct tm tm;
        char ts[128];
        if (time_format) { /* mosquitto's way: local time, and its words when it fails */
            localtime_r(&tv.tv_sec, &tm);
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wformat-nonliteral" /* the operator's: strftime's own */
            if (strftime(ts, sizeof(ts), time_format, &tm) == 0)
                snprintf(ts, sizeof(ts), "Time error");
#pragma GCC diagnostic pop
        } else if (mosquitto_shape) {
            snprintf(ts, sizeof(ts), "%lld", (long long)tv.tv_sec);
        } else {
            gmtime_r(&tv.tv_sec, &tm);
            size_t n = strftime(ts, sizeof(ts), "%Y-%m-%dT%H:%M:%S", &tm);
            snprintf(ts + n, sizeof(ts) - n, ".%03ldZ", (long)tv.tv_usec / 1000);
        }
        o = (size_t)snprintf(out, outlen, "%s%s", ts, mosquitto_shape ? ": " : " ");
        if (o >= outlen) o = outlen - 1;
    }
    if (!bare) snprintf(out + o, outlen - o, "%s: ", level_name(level));
}

__attribute__((format(printf, 3, 0))) static void
log_line(unsigned level, bool bare, const char *fmt, va_list ap)
{
    char raw[1024], msg[1024], prefix[160];
    prefix[0] = '\0';
    vsnprintf(raw, sizeof(raw), fmt, ap);
    lq_escape_controls(raw, msg, sizeof(msg)); /* a client cannot forge or split lines */
    int saved = errno;
    if (log_dests & (LQ_DEST_STDERR | LQ_DEST_STDOUT | LQ_DEST_FILE))
        line_prefix(level, bare, prefix, sizeof(prefix));
    if (log_dests & LQ_DEST_STDERR) fprintf(stderr, "%s%s\n", prefix, msg);
    if (log_dests & LQ_DEST_STDOUT) {
        fprintf(stdout, "%s%s\n", prefix, msg);
        fflush(stdout);
    }
    if ((log_dests & LQ_DEST_FILE) && log_file) fprintf(log_file, "%s%s\n", prefix, msg);
    if (log_dests & LQ_DEST_SYSLOG) syslog(syslog_priority(level), "%s", msg);
    errno = saved;
}

void
lq_log(unsigned level, const char *fmt, ...)
{
    if (!(lq_log_types & level)) return;
    va_list ap;
    va_start(ap, fmt);
    log_line(level, false, fmt, ap);
    va_end(ap);
}

void
lq_log_as_mosquitto(unsigned level, const char *fmt, ...)
{
    if (!(lq_log_types & level)) return;
    va_list ap;
    va_start(ap, fmt);
    log_line(level, true, fmt, ap);
    va_end(ap);
}

void
lq_log_limited(struct lq_log_limit *ll, unsigned level, const char *fmt, ...)
{
    if (!(lq_log_types & level)) return;
    uint64_t now = lq_now_ms();
    if (ll->last_ms && now - ll->last_ms < 1000) {
        ll->unlogged++;
        return;
    }
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    if (ll->unlogged)
        lq_log(level, "%s (similar lines left out since the last one: %llu)", msg,
               (unsigned long long)ll->unlogged);
    else
        lq_log(level, "%s", msg);
    ll->last_ms = now;
    ll->unlogged = 0;
}
