/* SPDX-License-Identifier: MIT
 *
 * sdnotify: systemd's readiness protocol (sd_notify(3)), spoken directly: one datagram
 * of "KEY=VALUE" lines to the AF_UNIX socket named by $NOTIFY_SOCKET (a leading '@'
 * names the abstract namespace). Without $NOTIFY_SOCKET every call does nothing, so
 * the broker calls them unconditionally. Process-wide state, like the log.
 */
#ifndef LUNAMQ_SDNOTIFY_H
#define LUNAMQ_SDNOTIFY_H

#include <stdbool.h>
#include <stdint.h>

/* Read $NOTIFY_SOCKET, $WATCHDOG_USEC and $WATCHDOG_PID (after daemonising: the pid
 * must be the final one), remove them from the environment (children are not the
 * service) and connect to the socket now, while the broker may still be root: the
 * permission check is done once, at connect. Returns false when there is no socket
 * or it cannot be reached (logged). */
bool sdnotify_open(void);
void sdnotify_close(void);
bool sdnotify_enabled(void);

/* Send a message as is ("READY=1", "STATUS=..."); -1 when it could not be sent. */
int sdnotify_send(const char *msg);
/* The usual ones. reloading adds MONOTONIC_USEC, as systemd asks of a reload. */
void sdnotify_ready(void);
void sdnotify_reloading(void);
void sdnotify_stopping(void);
void sdnotify_watchdog(void);
/* $WATCHDOG_USEC when the watchdog is for this process, else 0: then "WATCHDOG=1"
 * is due at least that often (the broker sends it at half the interval). */
uint64_t sdnotify_watchdog_usec(void);

#endif
