/* SPDX-License-Identifier: MIT
 *
 * sdnotify: systemd's notify protocol without libsystemd. The protocol is one datagram
 * per message on an AF_UNIX socket; the socket is connected once, at start, so that a
 * broker that dropped root can still reach a socket only root could open. */
#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "lq.h"
#include "sdnotify.h"

static int fd = -1;
static struct sockaddr_un addr;
static socklen_t addr_len;
static uint64_t watchdog_usec;
static bool stopping; /* STOPPING=1 is said once */
static struct lq_log_limit send_log;

/* "/path" or "@abstract" into addr; -1 when it is neither. */
static int
set_address(const char *name)
{
    size_t n = strlen(name);
    if (n < 2 || n >= sizeof(addr.sun_path) || (name[0] != '/' && name[0] != '@')) return -1;
    memset(&addr, 0, sizeof(addr));
    addr.sun_family = AF_UNIX;
    memcpy(addr.sun_path, name, n);
    if (name[0] == '@') addr.sun_path[0] = '\0'; /* abstract: a NUL, then the name, no end */
    addr_len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n);
    return 0;
}

/* $WATCHDOG_USEC, when $WATCHDOG_PID is unset or names this process; else 0. */
static uint64_t
watchdog_from_env(void)
{
    const char *usec = getenv("WATCHDOG_USEC"), *pid = getenv("WATCHDOG_PID");
    if (!usec) return 0;
    char *end;
    errno = 0;
    unsigned long long v = strtoull(usec, &end, 10);
    if (errno || end == usec || *end || v == 0) return 0;
    if (pid) {
        long p = strtol(pid, &end, 10);
        if (*end || p != (long)getpid()) return 0;
    }
    return (uint64_t)v;
}

bool
sdnotify_open(void)
{
    sdnotify_close();
    const char *name = getenv("NOTIFY_SOCKET");
    uint64_t wd = watchdog_from_env();
    bool named = name && *name;
    int bad = named ? set_address(name) : 0;
    if (named && bad < 0)
        lq_log(LQ_LOG_WARNING, "NOTIFY_SOCKET %s: not a socket path: systemd is not notified",
               name);
    if (named && bad == 0) {
        fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
        if (fd < 0 || connect(fd, (const struct sockaddr *)&addr, addr_len) < 0) {
            lq_log(LQ_LOG_WARNING, "NOTIFY_SOCKET %s: %s: systemd is not notified", name,
                   strerror(errno));
            if (fd >= 0) close(fd);
            fd = -1;
        }
    }
    watchdog_usec = fd >= 0 ? wd : 0;
    /* what the service manager said is for this process, not for what it starts */
    unsetenv("NOTIFY_SOCKET");
    unsetenv("WATCHDOG_USEC");
    unsetenv("WATCHDOG_PID");
    return fd >= 0;
}

void
sdnotify_close(void)
{
    if (fd >= 0) close(fd);
    fd = -1;
    watchdog_usec = 0;
    stopping = false;
}

bool
sdnotify_enabled(void)
{
    return fd >= 0;
}

int
sdnotify_send(const char *msg)
{
    if (fd < 0) return 0;
    size_t n = strlen(msg);
    ssize_t sent = send(fd, msg, n, MSG_NOSIGNAL);
    /* the manager's socket was made again (a re-executed systemd): connect again */
    if (sent < 0 && (errno == ECONNREFUSED || errno == ENOTCONN) &&
        connect(fd, (const struct sockaddr *)&addr, addr_len) == 0)
        sent = send(fd, msg, n, MSG_NOSIGNAL);
    if (sent == (ssize_t)n) return 0;
    lq_log_limited(&send_log, LQ_LOG_WARNING, "NOTIFY_SOCKET: cannot send %.*s: %s",
                   (int)strcspn(msg, "\n"), msg, sent < 0 ? strerror(errno) : "short write");
    return -1;
}

void
sdnotify_ready(void)
{
    sdnotify_send("READY=1");
}

void
sdnotify_reloading(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    char msg[64];
    snprintf(msg, sizeof(msg), "RELOADING=1\nMONOTONIC_USEC=%llu",
             (unsigned long long)ts.tv_sec * 1000000ull + (unsigned long long)ts.tv_nsec / 1000);
    sdnotify_send(msg);
}

void
sdnotify_stopping(void)
{
    if (stopping) return;
    stopping = true;
    sdnotify_send("STOPPING=1");
}

void
sdnotify_watchdog(void)
{
    sdnotify_send("WATCHDOG=1");
}

uint64_t
sdnotify_watchdog_usec(void)
{
    return watchdog_usec;
}
