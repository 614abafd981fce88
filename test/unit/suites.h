/* SPDX-License-Identifier: MIT */
#ifndef LUNAMQ_TEST_SUITES_H
#define LUNAMQ_TEST_SUITES_H

#include <check.h>

Suite *suite_mqtt_codec(void); /* test_mqtt.c */
Suite *suite_topic(void);      /* test_topic.c: syntax, matching, tree, shared groups */
Suite *suite_retain(void);     /* test_retain.c */
Suite *suite_conf(void);       /* test_conf.c */
Suite *suite_hooks(void);      /* test_hooks.c: Lua hooks without a broker */
Suite *suite_conn(void);       /* test_conn.c: connection deadlines (the wheel) */
Suite *suite_dial(void);       /* test_dial.c: outgoing connections, plain and TLS */
Suite *suite_log(void);        /* test_log.c: escaping, limited lines */
Suite *suite_store(void);      /* test_store.c: the journal, recovery, snapshots */
Suite *suite_auth(void);       /* test_auth.c: password_file, lunamq-ctl passwd, acl_file */
Suite *suite_tls(void);        /* test_tls.c: session tickets, resumption, reloads */
Suite *suite_cluster(void);    /* test_cluster.c: topic <-> NATS subject mapping */

Suite *suite_bridge(void);  /* test_bridge.c: topic remapping, names */
Suite *suite_service(void); /* test_service.c: sd_notify, pid file, user, log formats */
Suite *suite_kv(void);      /* test_kv.c: the hooks' key-value store */
Suite *suite_httpc(void);   /* test_httpc.c: outgoing HTTP on the loop (libcurl multi) */
Suite *suite_httpd(void);   /* test_httpd.c: HTTP request framing, percent-decoding */
Suite *suite_ws(void);      /* test_ws.c: WebSocket frames and the upgrade */

#endif
