/* SPDX-License-Identifier: MIT
 *
 * admin: the broker's Unix-domain admin socket (`admin_socket`, mode 0600, so only
 * the broker's user and root can talk to it) that lunamq-ctl uses, and the broker
 * figures it reports: statistics sampled every second (rates, event-loop lag),
 * clients, subscriptions, retained messages and hooks.
 *
 * Protocol: the client sends one line "FORMAT<TAB>COMMAND[<TAB>ARG]...\n" (FORMAT is
 * "json" or "text"); the broker answers "ok\n" and the body, or "error<TAB>message\n",
 * and closes.
 */
#ifndef LUNAMQ_ADMIN_H
#define LUNAMQ_ADMIN_H

#include <stdbool.h>
#include <stddef.h>

struct broker;
struct event_base;
struct admin;

/* Listen on path (NULL or "none": no socket, statistics are still sampled). Returns
 * NULL, logged, when the socket cannot be made (another broker holds it, ...); then
 * err is "" unless the path names something that is not a socket, which is a
 * configuration error (the broker does not start: it would delete that file). */
struct admin *admin_new(struct broker *b, struct event_base *base, const char *path, char *err,
                        size_t errlen);
void admin_free(struct admin *a); /* removes the socket file; NULL is a no-op */
/* The dashboard's figures as one JSON object: {"stats": what `lunamq-ctl --json stats`
 * says, "hooks": what `--json hooks` says, "busiest": the ten online clients with the
 * most bytes both ways, as `--json clients` lists them}. */
struct sbuf;
void admin_dashboard_json(struct admin *a, struct sbuf *out);
/* Is /metrics being served (metrics_listener configured and listening)? */
bool admin_serves_metrics(const struct admin *a);

#endif
