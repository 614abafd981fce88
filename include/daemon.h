/* SPDX-License-Identifier: MIT
 *
 * daemon: running in the background as mosquitto -d does, and the pid file.
 *
 * The parent of -d stays until the broker is serving, so that its exit status says
 * whether the start worked (0), or not (the broker's own status: 1, or 3 for the
 * configuration), and errors reach the terminal it was started from.
 */
#ifndef LUNAMQ_DAEMON_H
#define LUNAMQ_DAEMON_H

#include <stddef.h>

/* Fork. The parent waits for daemon_ready (then exits 0) or for the child's end (then
 * exits with its status); it never returns. The child starts a new session (setsid),
 * reads from /dev/null and returns 0. -1 (logged) when it cannot fork. Call it
 * before any thread or event base exists. */
int daemon_start(void);
/* The broker serves: let the parent go, and send stdout and stderr to /dev/null (as
 * mosquitto does: with -d, log to a file or syslog). No-op without daemon_start. */
void daemon_ready(void);

/* Write the pid, replacing a stale file: made anew (never written through a link or
 * into an existing file: the directory may be the broker user's). Returns 0, or -1
 * with "pid_file PATH: reason" in err. */
int pidfile_write(const char *path, char *err, size_t errlen);
/* Remove it at a clean exit, if it still holds this process's pid. */
void pidfile_remove(const char *path);

#endif
