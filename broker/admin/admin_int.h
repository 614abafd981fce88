/* SPDX-License-Identifier: MIT
 * Shared by the files of admin/ only. */
#ifndef LUNAMQ_ADMIN_INT_H
#define LUNAMQ_ADMIN_INT_H

#include <stddef.h>
#include <stdint.h>

struct event_base;
struct sbuf;

/* metrics_http.c: the /metrics endpoint (metrics_listener), a small HTTP/1.1 server
 * that answers one GET or HEAD per connection with page(arg, out) and closes. What a
 * client may hold is bounded: headers (8 KiB, else 431), no body (413), 5 s from
 * accept to the reply, 16 connections at once (the next ones get 503). */
struct metrics_http;
struct metrics_http *metrics_http_new(struct event_base *base, const char *host, uint16_t port,
                                      void (*page)(void *arg, struct sbuf *out), void *arg);
void metrics_http_free(struct metrics_http *m); /* NULL is a no-op */

/* kvcmd.c: `kv get|set|del|list|mset ...`; returns an error message (maybe in buf) or
 * NULL. */
struct kv;
struct reply;
const char *cmd_kv(struct kv *kv, struct reply *r, int argc, char **argv, char *buf, size_t len);

#endif
