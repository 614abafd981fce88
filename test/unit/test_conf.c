/* SPDX-License-Identifier: MIT
 *
 * Configuration: defaults, every option, and every error as "FILE:LINE: message". */
#include <check.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "conf.h"
#include "lq.h"
#include "suites.h"

static char path[64];
static char err[512];

static int
load_text(struct lq_conf *c, const char *text)
{
    strcpy(path, "/tmp/lunamq-conf-XXXXXX");
    int fd = mkstemp(path);
    ck_assert_int_ge(fd, 0);
    ck_assert_int_eq(write(fd, text, strlen(text)), (ssize_t)strlen(text));
    close(fd);
    conf_init(c);
    int rc = conf_load(c, path, err, sizeof(err));
    unlink(path);
    return rc;
}

static void
expect_error(const char *text, int line, const char *msg)
{
    struct lq_conf c;
    ck_assert_int_eq(load_text(&c, text), -1);
    char want[600];
    snprintf(want, sizeof(want), "%s:%d: %s", path, line, msg);
    ck_assert_str_eq(err, want);
    conf_fini(&c);
}

START_TEST(test_defaults)
{
    struct lq_conf c;
    conf_init(&c);
    ck_assert(c.auth.allow_anonymous);
    ck_assert(c.retain_available);
    ck_assert_uint_eq(c.max_inflight_messages, 20);
    ck_assert_uint_eq(c.max_queued_messages, 1000);
    ck_assert_uint_eq(c.max_queued_bytes, 64u << 20);
    ck_assert_uint_eq(c.max_queued_bytes_total, 1u << 30);
    ck_assert_uint_eq(c.max_hold_time_ms, 1000);
    ck_assert_uint_eq(c.max_connect_packet_size, 65536);
    ck_assert_uint_eq(c.max_keepalive, 0); /* no limit, as mosquitto >= 2.0.13 (issue 12.2) */
    ck_assert_uint_eq(c.max_topic_levels, 200);
    ck_assert_uint_eq(c.max_subscriptions_per_client, 10000);
    ck_assert_int_eq(c.persistent_client_expiration, -1);
    ck_assert_ptr_null(c.listeners);
    /* issue 18; without a file, paths stay as the callers default them (working directory) */
    ck_assert_ptr_null(c.user);
    ck_assert_ptr_null(c.pid_file);
    ck_assert(c.log_timestamp);
    ck_assert_ptr_null(c.log_timestamp_format);
    ck_assert(c.connection_messages);
    ck_assert(!c.log_format_mosquitto);
    ck_assert_ptr_null(c.conf_dir);
    ck_assert_ptr_null(c.scripts_dir);
    ck_assert_ptr_null(c.admin_socket);
    ck_assert_ptr_null(c.persistence_location);
    conf_fini(&c);
}
END_TEST

/* A comment line of many words is not an option with too many values. */
START_TEST(test_long_comments)
{
    struct lq_conf c;
    ck_assert_int_eq(load_text(&c, "# one two three four five six\n"
                                   "   # indented comment with words\n"
                                   "#max_keepalive 30 plus words\n"
                                   "max_keepalive 40\n"),
                     0);
    ck_assert_uint_eq(c.max_keepalive, 40);
    conf_fini(&c);
}
END_TEST

/* issue 12.2: max_keepalive 0 means no limit, as in mosquitto. */
START_TEST(test_max_keepalive_zero)
{
    struct lq_conf c;
    ck_assert_int_eq(load_text(&c, "max_keepalive 30\nmax_keepalive 0\n"), 0);
    ck_assert_uint_eq(c.max_keepalive, 0);
    conf_fini(&c);
}
END_TEST

START_TEST(test_every_option)
{
    struct lq_conf c;
    ck_assert_int_eq(load_text(&c, "# comment\n\n  listener 1883 127.0.0.1\n"
                                   "listener 8883\n"
                                   "allow_anonymous false\n"
                                   "max_packet_size 1000\n"
                                   "max_connect_packet_size 4096\n"
                                   "max_inflight_messages 7\n"
                                   "max_queued_messages 50\n"
                                   "max_queued_bytes 1048576\n"
                                   "max_queued_bytes_total 0\n"
                                   "max_hold_time 0.25\n"
                                   "max_connections -1\n"
                                   "max_keepalive 30\n"
                                   "message_size_limit 500\n"
                                   "retain_available false\n"
                                   "max_topic_levels 32\n"
                                   "max_subscriptions_per_client 0\n"
                                   "persistent_client_expiration 2d\n"
                                   "log_type error\nlog_type subscribe\n"
                                   "log_dest stdout\nlog_dest file /tmp/lunamq-test.log\n"),
                     0);
    ck_assert_ptr_nonnull(c.listeners);
    ck_assert_uint_eq(c.listeners->port, 1883);
    ck_assert_str_eq(c.listeners->host, "127.0.0.1");
    ck_assert_uint_eq(c.listeners->next->port, 8883);
    ck_assert_ptr_null(c.listeners->next->host);
    ck_assert(!c.auth.allow_anonymous);
    ck_assert(!c.retain_available);
    ck_assert_uint_eq(c.max_packet_size, 1000);
    ck_assert_uint_eq(c.max_connect_packet_size, 4096);
    ck_assert_uint_eq(c.max_inflight_messages, 7);
    ck_assert_uint_eq(c.max_queued_messages, 50);
    ck_assert_uint_eq(c.max_queued_bytes, 1048576);
    ck_assert_uint_eq(c.max_queued_bytes_total, 0);
    ck_assert_uint_eq(c.max_hold_time_ms, 250);
    ck_assert_uint_eq(c.max_connections, 0);
    ck_assert_uint_eq(c.max_keepalive, 30);
    ck_assert_uint_eq(c.message_size_limit, 500);
    ck_assert_uint_eq(c.max_topic_levels, 32);
    ck_assert_uint_eq(c.max_subscriptions_per_client, 0);
    ck_assert_int_eq(c.persistent_client_expiration, 2 * 86400);
    ck_assert_uint_eq(c.log_types, LQ_LOG_ERR | LQ_LOG_SUBSCRIBE);
    ck_assert_uint_eq(c.log_dests, LQ_DEST_STDOUT | LQ_DEST_FILE);
    ck_assert_str_eq(c.log_file, "/tmp/lunamq-test.log");
    conf_fini(&c);
}
END_TEST

START_TEST(test_errors)
{
    expect_error("listener 1883\nmax_bogus 1\n", 2, "unknown option 'max_bogus'");
    expect_error("max_keepalive 5\n", 1, "max_keepalive: '5' is not 0 (no limit) or 10..65535");
    expect_error("max_keepalive 65536\n", 1,
                 "max_keepalive: '65536' is not 0 (no limit) or 10..65535");
    expect_error("max_keepalive ten\n", 1, "max_keepalive: 'ten' is not a number");
    expect_error("max_hold_time -1\n", 1,
                 "max_hold_time: '-1' is not a number of seconds from 0 to 3600");
    expect_error("max_hold_time 1s\n", 1,
                 "max_hold_time: '1s' is not a number of seconds from 0 to 3600");
    expect_error("listener\n", 1, "listener: missing value");
    expect_error("listener 0\n", 1, "listener: '0' out of range 1..65535");
    expect_error("listener 1883 127.0.0.1 extra\n", 1, "listener: unexpected 'extra'");
    expect_error("allow_anonymous yes\n", 1, "allow_anonymous: 'yes' is not true or false");
    expect_error("max_packet_size 10\n", 1, "max_packet_size: 10 is below 20 bytes");
    expect_error("max_connect_packet_size 19\n", 1,
                 "max_connect_packet_size: 19 is below 20 bytes");
    expect_error("log_type chatty\n", 1, "log_type: unknown type 'chatty'");
    expect_error("log_dest topic\n", 1, "log_dest topic: not supported");
    expect_error("persistent_client_expiration 5s\n", 1,
                 "persistent_client_expiration: '5s' is not a duration (e.g. 2h, 3d, 1w, 1m, 1y)");
    struct lq_conf c;
    conf_init(&c);
    ck_assert_int_eq(conf_load(&c, "/nonexistent/lunamq.conf", err, sizeof(err)), -1);
    ck_assert_str_eq(err, "/nonexistent/lunamq.conf: cannot open: No such file or directory");
    conf_fini(&c);
}
END_TEST

/* protocol websockets and its options belong to the listener above them. */
START_TEST(test_websockets_options)
{
    struct lq_conf c;
    ck_assert_int_eq(load_text(&c, "listener 1883\n"
                                   "listener 8083 127.0.0.1\nprotocol websockets\n"
                                   "websockets_origin https://a.example http://b.example:8080\n"
                                   "websockets_origin https://c.example\n"
                                   "http_listener 8080\nwebsockets_origin https://d.example\n"
                                   "websockets_headers_size 4096\n"),
                     0);
    const struct listener_conf *tcp = c.listeners, *ws = tcp->next, *http = ws->next;
    ck_assert(!tcp->websockets && tcp->nws_origins == 0);
    ck_assert(ws->websockets && !ws->http);
    ck_assert_uint_eq(ws->nws_origins, 3);
    ck_assert_str_eq(ws->ws_origins[1], "http://b.example:8080");
    ck_assert_str_eq(ws->ws_origins[2], "https://c.example");
    ck_assert(http->http && !http->websockets && http->nws_origins == 1);
    ck_assert_uint_eq(c.websockets_headers_size, 4096);
    ck_assert(conf_has_mqtt_listener(&c));
    conf_fini(&c);
    expect_error("protocol websockets\n", 1, "protocol: must follow a listener line");
    expect_error("listener 1\nprotocol http\n", 2, "protocol: 'http' is not mqtt or websockets");
    expect_error("http_listener 1\nprotocol websockets\n", 2,
                 "protocol: an http_listener speaks HTTP (and /mqtt)");
    expect_error("listener 1\nprotocol websockets\nwebsockets_origin example.com\n", 3,
                 "websockets_origin: 'example.com' is not an origin (scheme://host[:port], no "
                 "path)");
    expect_error("listener 1\nprotocol websockets\nwebsockets_origin https://a.example/app\n", 3,
                 "websockets_origin: 'https://a.example/app' is not an origin "
                 "(scheme://host[:port], no path)");
    expect_error("websockets_headers_size 70000\n", 1,
                 "websockets_headers_size: '70000' out of range 0..65536");
    expect_error("http_dir /var/www\n", 1,
                 "http_dir: not supported: lunamq serves no files over WebSockets' HTTP (the "
                 "dashboard is built in: http_listener)");
    ck_assert_int_eq(load_text(&c, "listener 1\nwebsockets_origin https://a.example\n"), -1);
    ck_assert_ptr_nonnull(strstr(err, "websockets_origin needs protocol websockets"));
    conf_fini(&c);
}
END_TEST

/* TLS options belong to the listener above them; the set must make sense. */
START_TEST(test_hook_options)
{
    struct lq_conf c;
    conf_init(&c);
    ck_assert_ptr_null(c.scripts_dir);
    ck_assert_uint_eq(c.hook_instruction_limit, 1000000);
    ck_assert_uint_eq(c.hook_memory_limit, 16 * 1024 * 1024);
    ck_assert(!c.hook_on_error_drop);
    conf_fini(&c);
    ck_assert_int_eq(load_text(&c, "scripts_dir /srv/hooks\nhook_instruction_limit 5000\n"
                                   "hook_memory_limit 1048576\nhook_on_error drop\n"),
                     0);
    ck_assert_str_eq(c.scripts_dir, "/srv/hooks");
    ck_assert_uint_eq(c.hook_instruction_limit, 5000);
    ck_assert_uint_eq(c.hook_memory_limit, 1048576);
    ck_assert(c.hook_on_error_drop);
    conf_fini(&c);
    expect_error("hook_on_error ignore\n", 1, "hook_on_error: 'ignore' is not pass or drop");
    expect_error("hook_memory_limit 10\n", 1,
                 "hook_memory_limit: '10' out of range 262144..1099511627776");
}
END_TEST

START_TEST(test_tls_options)
{
    struct lq_conf c;
    ck_assert_int_eq(load_text(&c, "listener 1883 127.0.0.1\n"
                                   "listener 8883\n"
                                   "cafile /ca.crt\n"
                                   "certfile /s.crt\n"
                                   "keyfile /s.key\n"
                                   "crlfile /ca.crl\n"
                                   "require_certificate true\n"
                                   "use_identity_as_username true\n"
                                   "tls_version tlsv1.3\n"
                                   "ciphers_tls1.3 TLS_AES_128_GCM_SHA256\n"
                                   "tls_handshake_timeout 3\n"),
                     0);
    ck_assert_ptr_null(c.listeners->tls);
    const struct tls_conf *tc = c.listeners->next->tls;
    ck_assert_ptr_nonnull(tc);
    ck_assert_str_eq(tc->file[TLS_CAFILE], "/ca.crt");
    ck_assert_str_eq(tc->file[TLS_KEYFILE], "/s.key");
    ck_assert_ptr_null(tc->file[TLS_CAPATH]);
    char at[128];
    snprintf(at, sizeof(at), "%s:5", path);
    ck_assert_str_eq(tc->at[TLS_KEYFILE], at);
    ck_assert(tc->require_certificate && tc->use_identity_as_username);
    ck_assert_int_eq(tc->min_version, 13);
    ck_assert_str_eq(tc->ciphers_tls13, "TLS_AES_128_GCM_SHA256");
    snprintf(at, sizeof(at), "%s:10", path); /* issue 12.12: errors name this line */
    ck_assert_str_eq(tc->ciphers_tls13_at, at);
    ck_assert_ptr_null(tc->ciphers_at);
    ck_assert_uint_eq(tc->handshake_timeout, 3);
    conf_fini(&c);

    expect_error("cafile /x\n", 1, "cafile: must follow a listener line");
    expect_error("listener 8883\ntls_version tlsv1.0\n", 2,
                 "tls_version: 'tlsv1.0' is not tlsv1.2 or tlsv1.3");
    expect_error("listener 8883\ncertfile /s.crt\n", 1,
                 "listener 8883: a TLS listener needs both certfile and keyfile");
    expect_error("listener 8883\ncertfile /s\nkeyfile /k\nrequire_certificate true\n", 1,
                 "listener 8883: require_certificate needs cafile or capath");
    expect_error("listener 8883\ncertfile /s\nkeyfile /k\nuse_subject_as_username true\n", 1,
                 "listener 8883: use_identity_as_username and use_subject_as_username need "
                 "require_certificate true");
}
END_TEST

/* As in mosquitto.conf, a file or directory value is the rest of the line: paths may
 * hold spaces; the whitespace around them is not part of them. */
START_TEST(test_paths_with_spaces)
{
    struct lq_conf c;
    ck_assert_int_eq(load_text(&c, "listener 8883\n"
                                   "cafile /etc/my certs/ca.crt\n"
                                   "certfile   /etc/my certs/server.crt  \t\n"
                                   "keyfile /etc/my certs/server key.pem\r\n"
                                   "crlfile /etc/my certs/ca.crl\n"
                                   "scripts_dir /srv/lunamq hooks\n"
                                   "admin_socket /run/lunamq/admin socket\n"
                                   "log_dest file /var/log/lunamq/broker log.txt\n"),
                     0);
    const struct tls_conf *tc = c.listeners->tls;
    ck_assert_str_eq(tc->file[TLS_CAFILE], "/etc/my certs/ca.crt");
    ck_assert_str_eq(tc->file[TLS_CERTFILE], "/etc/my certs/server.crt");
    ck_assert_str_eq(tc->file[TLS_KEYFILE], "/etc/my certs/server key.pem");
    ck_assert_str_eq(tc->file[TLS_CRLFILE], "/etc/my certs/ca.crl");
    ck_assert_str_eq(c.scripts_dir, "/srv/lunamq hooks");
    ck_assert_str_eq(c.admin_socket, "/run/lunamq/admin socket");
    ck_assert_str_eq(c.log_file, "/var/log/lunamq/broker log.txt");
    conf_fini(&c);
    /* options of words keep refusing extra words */
    expect_error("log_dest stderr extra\n", 1, "log_dest: unexpected 'extra'");
    expect_error("max_queued_messages 10 20\n", 1, "max_queued_messages: unexpected '20'");
    expect_error("listener 8883\ncafile   \n", 2, "cafile: missing value");
}
END_TEST

START_TEST(test_include_dir)
{
    char dir[] = "/tmp/lunamq-inc-XXXXXX";
    ck_assert_ptr_nonnull(mkdtemp(dir));
    char f1[128], f2[128], f3[128];
    snprintf(f1, sizeof(f1), "%s/20-b.conf", dir);
    snprintf(f2, sizeof(f2), "%s/10-a.conf", dir);
    snprintf(f3, sizeof(f3), "%s/ignored.txt", dir);
    FILE *f = fopen(f1, "w");
    fputs("max_inflight_messages 9\n", f);
    fclose(f);
    f = fopen(f2, "w");
    fputs("max_inflight_messages 3\nlistener 1999\n", f);
    fclose(f);
    f = fopen(f3, "w");
    fputs("bogus\n", f);
    fclose(f);
    char text[256];
    snprintf(text, sizeof(text), "include_dir %s\n", dir);
    struct lq_conf c;
    ck_assert_int_eq(load_text(&c, text), 0);
    ck_assert_uint_eq(c.max_inflight_messages, 9); /* sorted: 20-b.conf comes last */
    ck_assert_uint_eq(c.listeners->port, 1999);
    conf_fini(&c);
    unlink(f1);
    unlink(f2);
    unlink(f3);
    rmdir(dir);
}
END_TEST

START_TEST(test_durations)
{
    ck_assert_int_eq(conf_parse_duration("1h"), 3600);
    ck_assert_int_eq(conf_parse_duration("3w"), 3 * 7 * 86400);
    ck_assert_int_eq(conf_parse_duration("1m"), 30 * 86400);
    ck_assert_int_eq(conf_parse_duration("1y"), 365 * 86400);
    ck_assert_int_eq(conf_parse_duration("h"), -1);
    ck_assert_int_eq(conf_parse_duration("12"), -1);
    ck_assert_int_eq(conf_parse_duration("-1d"), -1);
}
END_TEST

/* Issue 13: persistence options, as mosquitto.conf names them, and persistence_sync. */
START_TEST(test_persistence_options)
{
    struct lq_conf c;
    conf_init(&c);
    ck_assert(!c.persistence); /* mosquitto's default */
    ck_assert(!c.persistence_sync_process);
    ck_assert_uint_eq(c.autosave_interval, 1800);
    ck_assert(!c.autosave_on_changes);
    ck_assert_ptr_null(c.persistence_location);
    conf_fini(&c);
    ck_assert_int_eq(load_text(&c, "persistence true\n"
                                   "persistence_location /var/lib/luna mq/\n"
                                   "persistence_file mosquitto.db\n"
                                   "persistence_sync process\n"
                                   "autosave_interval 100\n"
                                   "autosave_on_changes true\n"),
                     0);
    ck_assert(c.persistence);
    ck_assert_str_eq(c.persistence_location, "/var/lib/luna mq/");
    ck_assert_str_eq(c.persistence_file, "mosquitto.db");
    ck_assert(c.persistence_sync_process);
    ck_assert_uint_eq(c.autosave_interval, 100);
    ck_assert(c.autosave_on_changes);
    conf_fini(&c);
    expect_error("persistence_sync disk\n", 1, "persistence_sync: 'disk' is not power or process");
    expect_error("persistence on\n", 1, "persistence: 'on' is not true or false");
    expect_error("autosave_interval -5\n", 1, "autosave_interval: '-5' out of range 0..4294967295");
}
END_TEST

/* Issue 16: how a node reaches NATS. Files may hold spaces; a certificate needs its key
 * and a key its certificate (whether the files can be read is cluster_open's). */
START_TEST(test_cluster_nats_options)
{
    struct lq_conf c;
    ck_assert_int_eq(load_text(&c, "cluster_name plant1\n"
                                   "cluster_nats_url nats://10.0.0.5:4222,nats://10.0.0.6:4222\n"
                                   "cluster_nats_username lq\n"
                                   "cluster_nats_password s3cret\n"
                                   "cluster_nats_credentials /etc/luna mq/node.creds\n"
                                   "cluster_nats_cafile /etc/lunamq/nats ca.crt\n"
                                   "cluster_nats_certfile /etc/lunamq/node1.crt\n"
                                   "cluster_nats_keyfile /etc/lunamq/node1.key\n"),
                     0);
    ck_assert_str_eq(c.cluster_nats_url, "nats://10.0.0.5:4222,nats://10.0.0.6:4222");
    ck_assert_str_eq(c.cluster_nats_username, "lq");
    ck_assert_str_eq(c.cluster_nats_password, "s3cret");
    ck_assert_str_eq(c.cluster_nats_credentials, "/etc/luna mq/node.creds");
    ck_assert_str_eq(c.cluster_nats_cafile, "/etc/lunamq/nats ca.crt");
    ck_assert_str_eq(c.cluster_nats_certfile, "/etc/lunamq/node1.crt");
    ck_assert_str_eq(c.cluster_nats_keyfile, "/etc/lunamq/node1.key");
    conf_fini(&c);
    ck_assert_int_eq(load_text(&c, "cluster_nats_cafile /ca.crt\n"), 0); /* TLS, no cert */
    ck_assert_ptr_null(c.cluster_nats_certfile);
    conf_fini(&c);
    expect_error("cluster_name t\ncluster_nats_certfile /a.crt\n", 2,
                 "cluster_nats_certfile and cluster_nats_keyfile go together");
    expect_error("cluster_nats_keyfile /a.key\ncluster_name t\n", 1,
                 "cluster_nats_certfile and cluster_nats_keyfile go together");
    expect_error("cluster_nats_cafile\n", 1, "cluster_nats_cafile: missing value");
    expect_error("cluster_nats_credentials\n", 1, "cluster_nats_credentials: missing value");
}
END_TEST

/* issue 14: password_file, acl_file, allow_anonymous as mosquitto 2.0 defaults it,
 * per_listener_settings */
START_TEST(test_auth_options)
{
    struct lq_conf c;
    /* no listener in the file: anonymous clients on the default 127.0.0.1 listener */
    ck_assert_int_eq(load_text(&c, "log_type error\n"), 0);
    ck_assert(c.auth.allow_anonymous);
    conf_fini(&c);
    /* a listener: false unless asked for */
    ck_assert_int_eq(load_text(&c, "listener 1883\n"), 0);
    ck_assert(!c.auth.allow_anonymous);
    ck_assert(!conf_auth(&c, c.listeners)->allow_anonymous);
    conf_fini(&c);
    ck_assert_int_eq(load_text(&c, "listener 1883\nallow_anonymous true\n"
                                   "password_file /etc/lunamq/pass words\n"
                                   "acl_file /etc/lunamq/acl\n"),
                     0);
    ck_assert(c.auth.allow_anonymous);
    ck_assert_str_eq(c.auth.password_file, "/etc/lunamq/pass words");
    ck_assert_str_eq(c.auth.acl_file, "/etc/lunamq/acl");
    ck_assert_ptr_eq(conf_auth(&c, c.listeners), &c.auth); /* one setting for all */
    conf_fini(&c);
    /* per listener: each starts as the lines before it said */
    ck_assert_int_eq(load_text(&c, "per_listener_settings true\n"
                                   "acl_file /a\n"
                                   "listener 8883\n"
                                   "listener 1884\npassword_file /p\nallow_anonymous true\n"),
                     0);
    const struct auth_conf *tls = conf_auth(&c, c.listeners);
    const struct auth_conf *pw = conf_auth(&c, c.listeners->next);
    ck_assert_str_eq(tls->acl_file, "/a");
    ck_assert_ptr_null(tls->password_file);
    ck_assert(!tls->allow_anonymous);
    ck_assert_str_eq(pw->acl_file, "/a");
    ck_assert_str_eq(pw->password_file, "/p");
    ck_assert(pw->allow_anonymous);
    conf_fini(&c);
    ck_assert_int_eq(load_text(&c, "listener 1883\nper_listener_settings true\n"), -1);
    ck_assert_ptr_nonnull(strstr(err, "per_listener_settings must come before the first listener"));
    conf_fini(&c);
    ck_assert_int_eq(load_text(&c, "password_file\n"), -1);
    conf_fini(&c);
}
END_TEST

/* Issue 17: bridges. A block with every option, as mosquitto.conf writes it; options that
 * are not bridge options still apply to the broker (and TLS ones to the last listener). */
static const char bridge_full[] = "listener 8883\n"
                                  "connection site1\n"
                                  "address 10.0.0.5:8883 [::1]:1884 broker.example\n"
                                  "addresses fe80::1:1885\n"
                                  "round_robin true\n"
                                  "start_type lazy\n"
                                  "restart_timeout 10 60\n"
                                  "threshold 20\n"
                                  "keepalive_interval 30\n"
                                  "idle_timeout 120\n"
                                  "notifications false\n"
                                  "notifications_local_only true\n"
                                  "notification_topic bridges/site 1/state\n"
                                  "remote_clientid site1-bridge\n"
                                  "local_clientid local-site1\n"
                                  "remote_username bridge user\n"
                                  "remote_password s3cret pw\n"
                                  "bridge_protocol_version mqttv50\n"
                                  "cleansession true\n"
                                  "local_cleansession false\n"
                                  "bridge_outgoing_retain false\n"
                                  "bridge_max_packet_size 100000\n"
                                  "bridge_receive_maximum 50\n"
                                  "bridge_session_expiry_interval 3600\n"
                                  "try_private false\n"
                                  "bridge_attempt_unsubscribe false\n"
                                  "bridge_cafile /etc/my ca/ca.crt\n"
                                  "bridge_capath /etc/ssl/certs\n"
                                  "bridge_certfile /etc/lunamq/bridge.crt\n"
                                  "bridge_keyfile /etc/lunamq/bridge.key\n"
                                  "bridge_insecure true\n"
                                  "bridge_tls_version tlsv1.3\n"
                                  "bridge_alpn mqtt\n"
                                  "topic # out\n"
                                  "topic \"\" in 1 cmd/dev1 remote/cmd/dev1\n"
                                  "topic sensors/# both 2 local/ site1/\n"
                                  "max_inflight_messages 7\n"
                                  "certfile /s.crt\n"
                                  "keyfile /s.key\n"
                                  "connection site2\n"
                                  "address 10.0.0.6\n"
                                  "topic a/+/b\n";

static void
assert_at(const char *at, int line)
{
    char want[128];
    snprintf(want, sizeof(want), "%s:%d", path, line);
    ck_assert_str_eq(at, want);
}

START_TEST(test_bridge_every_option)
{
    struct lq_conf c;
    ck_assert_int_eq(load_text(&c, bridge_full), 0);
    const struct bridge_conf *b = c.bridges;
    ck_assert_ptr_nonnull(b);
    ck_assert_str_eq(b->name, "site1");
    assert_at(b->at, 2);
    ck_assert_uint_eq(b->naddrs, 4);
    ck_assert_str_eq(b->addrs[0].host, "10.0.0.5");
    ck_assert_uint_eq(b->addrs[0].port, 8883);
    ck_assert_str_eq(b->addrs[1].host, "::1");
    ck_assert_uint_eq(b->addrs[1].port, 1884);
    ck_assert_str_eq(b->addrs[2].host, "broker.example");
    ck_assert_uint_eq(b->addrs[2].port, 1883);
    ck_assert_str_eq(b->addrs[3].host, "fe80::1"); /* a bare IPv6 address: its last ':' */
    ck_assert_uint_eq(b->addrs[3].port, 1885);
    ck_assert(b->round_robin);
    ck_assert_int_eq(b->start_type, BRIDGE_START_LAZY);
    ck_assert_uint_eq(b->restart_base, 10);
    ck_assert_uint_eq(b->restart_cap, 60);
    ck_assert_uint_eq(b->threshold, 20);
    ck_assert_uint_eq(b->keepalive, 30);
    ck_assert_uint_eq(b->idle_timeout, 120);
    ck_assert(!b->notifications);
    ck_assert(b->notifications_local_only);
    ck_assert_str_eq(b->notification_topic, "bridges/site 1/state");
    ck_assert_str_eq(b->remote_clientid, "site1-bridge");
    ck_assert_str_eq(b->local_clientid, "local-site1");
    ck_assert_str_eq(b->remote_username, "bridge user");
    ck_assert_str_eq(b->remote_password, "s3cret pw");
    ck_assert_uint_eq(b->protocol, 5);
    ck_assert(b->cleansession);
    ck_assert_int_eq(b->local_cleansession, 0);
    ck_assert(!b->outgoing_retain);
    ck_assert_uint_eq(b->max_packet_size, 100000);
    ck_assert_uint_eq(b->receive_maximum, 50);
    ck_assert_uint_eq(b->session_expiry, 3600);
    ck_assert(!b->try_private);
    ck_assert(!b->attempt_unsubscribe);
    ck_assert_str_eq(b->cafile, "/etc/my ca/ca.crt");
    ck_assert_str_eq(b->capath, "/etc/ssl/certs");
    ck_assert_str_eq(b->certfile, "/etc/lunamq/bridge.crt");
    ck_assert_str_eq(b->keyfile, "/etc/lunamq/bridge.key");
    assert_at(b->tls_at, 33); /* bridge_alpn, the last bridge TLS line */
    ck_assert(b->insecure);
    ck_assert_int_eq(b->tls_version, 13);
    ck_assert_str_eq(b->alpn, "mqtt");
    ck_assert_uint_eq(b->ntopics, 3);
    const struct bridge_topic *t = b->topics;
    ck_assert_str_eq(t[0].pattern, "#");
    ck_assert_uint_eq(t[0].dir, BRIDGE_DIR_OUT);
    ck_assert_uint_eq(t[0].qos, 0);
    ck_assert_ptr_null(t[0].local_prefix);
    ck_assert_ptr_null(t[0].remote_prefix);
    assert_at(t[0].at, 34);
    ck_assert_str_eq(t[1].pattern, "");
    ck_assert_uint_eq(t[1].dir, BRIDGE_DIR_IN);
    ck_assert_uint_eq(t[1].qos, 1);
    ck_assert_str_eq(t[1].local_prefix, "cmd/dev1");
    ck_assert_str_eq(t[1].remote_prefix, "remote/cmd/dev1");
    ck_assert_str_eq(t[2].pattern, "sensors/#");
    ck_assert_uint_eq(t[2].dir, BRIDGE_DIR_BOTH);
    ck_assert_uint_eq(t[2].qos, 2);
    ck_assert_str_eq(t[2].local_prefix, "local/");
    ck_assert_str_eq(t[2].remote_prefix, "site1/");
    /* after the block: the broker's and the listener's, as in mosquitto */
    ck_assert_uint_eq(c.max_inflight_messages, 7);
    ck_assert_str_eq(c.listeners->tls->file[TLS_CERTFILE], "/s.crt");
    const struct bridge_conf *b2 = b->next;
    ck_assert_ptr_nonnull(b2);
    ck_assert_str_eq(b2->name, "site2");
    ck_assert_uint_eq(b2->ntopics, 1);
    ck_assert_str_eq(b2->topics[0].pattern, "a/+/b");
    ck_assert_ptr_null(b2->next);
    conf_fini(&c);
    ck_assert_ptr_null(c.bridges);
}
END_TEST

START_TEST(test_bridge_defaults)
{
    struct lq_conf c;
    conf_init(&c);
    ck_assert_ptr_null(c.bridges);
    conf_fini(&c);
    ck_assert_int_eq(load_text(&c, "connection b\naddress h\ntopic a/#\n"), 0);
    const struct bridge_conf *b = c.bridges;
    ck_assert_uint_eq(b->naddrs, 1);
    ck_assert_str_eq(b->addrs[0].host, "h");
    ck_assert_uint_eq(b->addrs[0].port, 1883);
    ck_assert(!b->round_robin);
    ck_assert_int_eq(b->start_type, BRIDGE_START_AUTOMATIC);
    ck_assert_uint_eq(b->restart_base, 5);
    ck_assert_uint_eq(b->restart_cap, 30);
    ck_assert_uint_eq(b->threshold, 10);
    ck_assert_uint_eq(b->keepalive, 60);
    ck_assert_uint_eq(b->idle_timeout, 60);
    ck_assert(b->notifications);
    ck_assert(!b->notifications_local_only);
    ck_assert_ptr_null(b->notification_topic);
    ck_assert_ptr_null(b->remote_clientid);
    ck_assert_ptr_null(b->local_clientid);
    ck_assert_ptr_null(b->remote_username);
    ck_assert_ptr_null(b->remote_password);
    ck_assert_uint_eq(b->protocol, 4);
    ck_assert(!b->cleansession);
    ck_assert_int_eq(b->local_cleansession, -1);
    ck_assert(b->outgoing_retain);
    ck_assert_uint_eq(b->max_packet_size, 0);
    ck_assert_uint_eq(b->receive_maximum, 0);
    ck_assert_uint_eq(b->session_expiry, 0);
    ck_assert(b->try_private);
    ck_assert(b->attempt_unsubscribe);
    ck_assert_ptr_null(b->cafile);
    ck_assert_ptr_null(b->capath);
    ck_assert_ptr_null(b->certfile);
    ck_assert_ptr_null(b->keyfile);
    ck_assert_ptr_null(b->tls_at);
    ck_assert(!b->insecure);
    ck_assert_int_eq(b->tls_version, 12);
    ck_assert_ptr_null(b->alpn);
    ck_assert_uint_eq(b->topics[0].dir, BRIDGE_DIR_OUT);
    ck_assert_uint_eq(b->topics[0].qos, 0);
    conf_fini(&c);
    /* mosquitto's minimums: below them, the minimum (mosquitto says so in a notice) */
    ck_assert_int_eq(load_text(&c, "connection b\naddress h\ntopic t\nkeepalive_interval 2\n"
                                   "threshold 0\nrestart_timeout 20\nclientid old-name\n"
                                   "username u\npassword p\n"),
                     0);
    ck_assert_uint_eq(c.bridges->keepalive, 5);
    ck_assert_uint_eq(c.bridges->threshold, 1);
    ck_assert_uint_eq(c.bridges->restart_base, 20); /* one value: a constant delay */
    ck_assert_uint_eq(c.bridges->restart_cap, 20);
    ck_assert_str_eq(c.bridges->remote_clientid, "old-name"); /* the deprecated names */
    ck_assert_str_eq(c.bridges->remote_username, "u");
    ck_assert_str_eq(c.bridges->remote_password, "p");
    conf_fini(&c);
}
END_TEST

/* Every refusal names its line and says why. */
START_TEST(test_bridge_refused)
{
    static const char *const psk = "not supported: PSK is not supported (use bridge_certfile)";
    static const char *const local = "not supported: the bridge's local side is inside the "
                                     "broker: it is not checked against password_file or "
                                     "acl_file";
    static const struct {
        const char *line, *msg;
    } cases[] = {
        {"bridge_identity dev1", psk},
        {"bridge_psk 0123abcd", psk},
        {"bridge_bind_address 10.0.0.1",
         "not supported: the bridge connects from the address the system picks"},
        {"bridge_require_ocsp true", "not supported: OCSP is not supported"},
        {"bridge_tcp_keepalive 30 5 3",
         "not supported: TCP keepalive is not configurable (keepalive_interval is MQTT's)"},
        {"bridge_tcp_user_timeout 10000", "not supported: TCP_USER_TIMEOUT is not configurable"},
        {"bridge_reload_type lazy",
         "not supported: how a reload treats bridges is not configurable"},
        {"local_username lq", local},
        {"local_password pw", local},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char text[256], msg[300];
        snprintf(text, sizeof(text), "connection b\naddress h\ntopic t\n%s\n", cases[i].line);
        snprintf(msg, sizeof(msg), "%.*s: %s", (int)strcspn(cases[i].line, " "), cases[i].line,
                 cases[i].msg);
        expect_error(text, 4, msg);
    }
    expect_error("connection b\naddress h\ntopic t\nbridge_tls_version tlsv1.1\n", 4,
                 "bridge_tls_version: tlsv1.1 is not supported: only tlsv1.2 and tlsv1.3");
    expect_error("connection b\naddress h\ntopic t\nbridge_tls_version tlsv1\n", 4,
                 "bridge_tls_version: tlsv1 is not supported: only tlsv1.2 and tlsv1.3");
    expect_error("connection b\nbridge_tls_version ssl3\n", 2,
                 "bridge_tls_version: 'ssl3' is not tlsv1.2 or tlsv1.3");
}
END_TEST

/* Bridge options outside a block; username and password stay unknown there. */
START_TEST(test_bridge_outside_block)
{
    expect_error("address h\n", 1, "address: must follow a connection line");
    expect_error("listener 1883\ntopic a/#\n", 2, "topic: must follow a connection line");
    expect_error("bridge_cafile /ca.crt\n", 1, "bridge_cafile: must follow a connection line");
    expect_error("keepalive_interval 30\n", 1, "keepalive_interval: must follow a connection line");
    expect_error("clientid x\n", 1, "clientid: must follow a connection line");
    expect_error("username u\n", 1, "unknown option 'username'");
    expect_error("password p\n", 1, "unknown option 'password'");
}
END_TEST

START_TEST(test_bridge_errors)
{
    /* the block as a whole: at the connection line */
    expect_error("connection b\ntopic t\n", 1, "connection b: no address line");
    expect_error("max_keepalive 30\nconnection b\naddress h\n", 2, "connection b: no topic line");
    expect_error("connection b\naddress h\ntopic t\nconnection c\ntopic t\n", 4,
                 "connection c: no address line");
    expect_error("connection b\naddress h\ntopic t\nremote_password p\n", 1,
                 "connection b: remote_password needs remote_username");
    expect_error("connection a+b\naddress h\ntopic t\n", 1,
                 "connection a+b: '+' or '#' in the name: the default notification topic "
                 "would not be a topic name; set notification_topic");
    struct lq_conf c;
    ck_assert_int_eq(load_text(&c, "connection a+b\naddress h\ntopic t\nnotifications false\n"), 0);
    conf_fini(&c);
    /* a name once */
    char msg[300];
    ck_assert_int_eq(load_text(&c, "connection b\naddress h\ntopic t\nconnection b\n"), -1);
    snprintf(msg, sizeof(msg), "%s:4: connection: 'b' is already the name of the bridge at %s:1",
             path, path);
    ck_assert_str_eq(err, msg);
    conf_fini(&c);
    /* MQTT 5 options with MQTT 3.1.1 (the default): at their line */
    expect_error("connection b\naddress h\ntopic t\nbridge_receive_maximum 10\n", 4,
                 "connection b: bridge_max_packet_size, bridge_receive_maximum and "
                 "bridge_session_expiry_interval are MQTT 5 options: they need "
                 "bridge_protocol_version mqttv50");
    expect_error("connection b\naddress h\ntopic t\nbridge_session_expiry_interval 60\n"
                 "bridge_protocol_version mqttv31\n",
                 4,
                 "connection b: bridge_max_packet_size, bridge_receive_maximum and "
                 "bridge_session_expiry_interval are MQTT 5 options: they need "
                 "bridge_protocol_version mqttv50");
    ck_assert_int_eq(load_text(&c, "connection b\naddress h\ntopic t\nbridge_max_packet_size "
                                   "4096\nbridge_protocol_version mqttv50\n"),
                     0); /* the protocol may come after */
    ck_assert_uint_eq(c.bridges->max_packet_size, 4096);
    conf_fini(&c);
    expect_error("connection b\nbridge_protocol_version mqttv5\n", 2,
                 "bridge_protocol_version: 'mqttv5' is not mqttv50, mqttv311 or mqttv31");
    /* TLS: at the last bridge TLS line */
    expect_error("connection b\naddress h\ntopic t\nbridge_cafile /ca\nbridge_certfile /c\n", 5,
                 "connection b: bridge_certfile and bridge_keyfile go together");
    expect_error("connection b\naddress h\ntopic t\nbridge_keyfile /k\nbridge_capath /cas\n", 5,
                 "connection b: bridge_certfile and bridge_keyfile go together");
    expect_error("connection b\naddress h\ntopic t\nbridge_certfile /c\nbridge_keyfile /k\n", 5,
                 "connection b: bridge TLS options need bridge_cafile or bridge_capath (TLS is "
                 "on with either)");
    expect_error("connection b\naddress h\ntopic t\nbridge_insecure true\n", 4,
                 "connection b: bridge TLS options need bridge_cafile or bridge_capath (TLS is "
                 "on with either)");
    /* values */
    expect_error("connection b\nrestart_timeout 30 10\n", 2,
                 "restart_timeout: cap 10 is below base 30");
    expect_error("connection b\nrestart_timeout 0\n", 2,
                 "restart_timeout: '0' out of range 1..4294967295");
    expect_error("connection b\nrestart_timeout 1 2 3\n", 2, "restart_timeout: unexpected '3'");
    expect_error("connection b\nkeepalive_interval 65536\n", 2,
                 "keepalive_interval: '65536' out of range 0..65535");
    expect_error("connection b\nstart_type manual\n", 2,
                 "start_type: 'manual' is not automatic, lazy or once");
    expect_error("connection b\nnotification_topic a/#\n", 2,
                 "notification_topic: 'a/#' is not a topic name (no wildcards)");
    expect_error("connection b\nbridge_receive_maximum 0\n", 2,
                 "bridge_receive_maximum: '0' out of range 1..65535");
    expect_error("connection\n", 1, "connection: missing value");
}
END_TEST

START_TEST(test_bridge_addresses)
{
    struct lq_conf c;
    ck_assert_int_eq(load_text(&c, "connection b\ntopic t\naddress h1:1883 h2:1884 h3\n"
                                   "address [2001:db8::1] 2001:db8::2:8883 # main, then backup\n"),
                     0);
    const struct bridge_conf *b = c.bridges;
    ck_assert_uint_eq(b->naddrs, 5); /* lines add up */
    ck_assert_str_eq(b->addrs[2].host, "h3");
    ck_assert_uint_eq(b->addrs[2].port, 1883);
    ck_assert_str_eq(b->addrs[3].host, "2001:db8::1");
    ck_assert_uint_eq(b->addrs[3].port, 1883);
    ck_assert_str_eq(b->addrs[4].host, "2001:db8::2");
    ck_assert_uint_eq(b->addrs[4].port, 8883);
    conf_fini(&c);
    expect_error("connection b\naddress\n", 2, "address: missing value");
    expect_error("connection b\naddress h:0\n", 2, "address: '0' out of range 1..65535");
    expect_error("connection b\naddress h:\n", 2, "address: '' is not a number");
    expect_error("connection b\naddress h:x\n", 2, "address: 'x' is not a number");
    expect_error("connection b\naddresses a :1883\n", 2, "addresses: ':1883': no host");
    expect_error("connection b\naddress 2001:db8::1\n", 2,
                 "address: '2001:db8::1': an IPv6 address needs its port (ADDR:PORT or "
                 "[ADDR]:PORT)");
    expect_error("connection b\naddress ::1\n", 2,
                 "address: '::1': an IPv6 address needs its port (ADDR:PORT or [ADDR]:PORT)");
    expect_error("connection b\naddress [::1\n", 2, "address: '[::1' is not [IPV6]:PORT");
    expect_error("connection b\naddress [h]:1883\n", 2,
                 "address: '[h]:1883': not an IPv6 address in the brackets");
    /* a line of more words than a line may hold */
    expect_error("connection b\naddress a b c d e f g h i j k l m n o p\n", 2,
                 "address: too many values (at most 15)");
}
END_TEST

/* topic PATTERN [DIR [QOS [LOCAL REMOTE]]]: mosquitto's remapping rules */
START_TEST(test_bridge_topics)
{
    struct lq_conf c;
    ck_assert_int_eq(load_text(&c, "connection b\naddress h\n"
                                   "topic # out\n"
                                   "topic a/# IN 1 \"\" remote/\n"
                                   "topic b both 0 local/ \"\"\n"
                                   "topic c/+ in 0 \"\" \"\"\n"
                                   "topic clients/total in 0 test/mosquitto/org/ $SYS/broker/\n"),
                     0);
    const struct bridge_topic *t = c.bridges->topics;
    ck_assert_uint_eq(c.bridges->ntopics, 5);
    ck_assert_uint_eq(t[1].dir, BRIDGE_DIR_IN); /* mosquitto: any case */
    ck_assert_ptr_null(t[1].local_prefix);
    ck_assert_str_eq(t[1].remote_prefix, "remote/");
    ck_assert_str_eq(t[2].local_prefix, "local/");
    ck_assert_ptr_null(t[2].remote_prefix);
    ck_assert_ptr_null(t[3].local_prefix);
    ck_assert_ptr_null(t[3].remote_prefix);
    ck_assert_str_eq(t[4].remote_prefix, "$SYS/broker/");
    conf_fini(&c);
    static const char head[] = "connection b\naddress h\n";
    static const struct {
        const char *line, *msg;
    } cases[] = {
        {"topic a/# both 1 local/",
         "topic: the local prefix 'local/' needs a remote prefix after it"},
        {"topic a/# both 1 loc/+/ remote/",
         "topic: local prefix 'loc/+/' has a wildcard: a prefix is a topic name"},
        {"topic a/# both 1 local/ remote/#",
         "topic: remote prefix 'remote/#' has a wildcard: a prefix is a topic name"},
        {"topic \"\" out",
         "topic: an empty pattern (\"\") needs a local and a remote prefix, each then the whole "
         "topic"},
        {"topic \"\" in 0 local \"\"",
         "topic: an empty pattern (\"\") needs a local and a remote prefix, each then the whole "
         "topic"},
        {"topic a/#/b", "topic: 'a/#/b' (local prefix and pattern) is not a valid topic filter"},
        {"topic # in 0 local remote/",
         "topic: 'local#' (local prefix and pattern) is not a valid topic filter"},
        {"topic +x in 0 l/ remote",
         "topic: 'l/+x' (local prefix and pattern) is not a valid topic filter"},
        {"topic a sideways", "topic: 'sideways' is not out, in or both"},
        {"topic a in 3", "topic: '3' out of range 0..2"},
        {"topic a in 0 l/ r/ extra", "topic: unexpected 'extra'"},
        {"topic", "topic: missing value"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char text[256];
        snprintf(text, sizeof(text), "%s%s\n", head, cases[i].line);
        expect_error(text, 3, cases[i].msg);
    }
}
END_TEST

/* A block in an included file ends with that file; the one around include_dir goes on. */
START_TEST(test_bridge_include_dir)
{
    char dir[] = "/tmp/lunamq-inc-XXXXXX";
    ck_assert_ptr_nonnull(mkdtemp(dir));
    char f1[128], text[256];
    snprintf(f1, sizeof(f1), "%s/b.conf", dir);
    FILE *f = fopen(f1, "w");
    fputs("connection inner\naddress h2\ntopic in/#\n", f);
    fclose(f);
    snprintf(text, sizeof(text), "connection outer\naddress h1\ninclude_dir %s\ntopic out/#\n",
             dir);
    struct lq_conf c;
    ck_assert_int_eq(load_text(&c, text), 0);
    ck_assert_str_eq(c.bridges->name, "outer");
    ck_assert_uint_eq(c.bridges->ntopics, 1);
    ck_assert_str_eq(c.bridges->topics[0].pattern, "out/#");
    ck_assert_str_eq(c.bridges->next->name, "inner");
    ck_assert_str_eq(c.bridges->next->topics[0].pattern, "in/#");
    conf_fini(&c);
    f = fopen(f1, "w");
    fputs("topic x\n", f);
    fclose(f);
    ck_assert_int_eq(load_text(&c, text), -1);
    char want[300];
    snprintf(want, sizeof(want), "%s:1: topic: must follow a connection line", f1);
    ck_assert_str_eq(err, want);
    conf_fini(&c);
    unlink(f1);
    rmdir(dir);
}
END_TEST

/* A reload compares blocks: the same lines elsewhere in the file are the same bridge. */
START_TEST(test_bridge_equal)
{
    struct lq_conf a, b;
    ck_assert_int_eq(load_text(&a, bridge_full), 0);
    char moved[sizeof(bridge_full) + 32];
    snprintf(moved, sizeof(moved), "# moved down\n\n%s", bridge_full);
    ck_assert_int_eq(load_text(&b, moved), 0);
    ck_assert_str_ne(a.bridges->at, b.bridges->at);
    ck_assert(bridge_conf_equal(a.bridges, b.bridges));
    ck_assert(bridge_conf_equal(a.bridges->next, b.bridges->next));
    ck_assert(!bridge_conf_equal(a.bridges, a.bridges->next));
    conf_fini(&b);
    /* one field changed: a topic's QoS */
    static const char *const from = "topic sensors/# both 2", *const to = "topic sensors/# both 1";
    strcpy(moved, bridge_full);
    char *p = strstr(moved, from);
    ck_assert_ptr_nonnull(p);
    memcpy(p, to, strlen(to));
    ck_assert_int_eq(load_text(&b, moved), 0);
    ck_assert(!bridge_conf_equal(a.bridges, b.bridges));
    ck_assert(bridge_conf_equal(a.bridges->next, b.bridges->next));
    conf_fini(&b);
    /* and an option left out that said its default: the same */
    ck_assert_int_eq(load_text(&b, "connection site2\naddress 10.0.0.6:1883\ntopic a/+/b out 0\n"
                                   "keepalive_interval 60\n"),
                     0);
    ck_assert(bridge_conf_equal(a.bridges->next, b.bridges));
    b.bridges->cafile = lq_xstrdup("/ca"); /* freed by conf_fini */
    ck_assert(!bridge_conf_equal(a.bridges->next, b.bridges));
    conf_fini(&b);
    conf_fini(&a);
}
END_TEST

/* Issue 18: the options of a system service, in mosquitto.conf's syntax. */
START_TEST(test_service_options)
{
    struct lq_conf c;
    ck_assert_int_eq(load_text(&c, "user lunamq\n"
                                   "pid_file /run/lunamq/lunamq.pid\n"
                                   "log_timestamp false\n"
                                   "log_timestamp_format   %Y-%m-%d %H:%M:%S  \n"
                                   "connection_messages false\n"
                                   "log_format mosquitto\n"),
                     0);
    ck_assert_str_eq(c.user, "lunamq");
    ck_assert_str_eq(c.pid_file, "/run/lunamq/lunamq.pid");
    ck_assert(!c.log_timestamp);
    ck_assert_str_eq(c.log_timestamp_format, "%Y-%m-%d %H:%M:%S"); /* the rest of the line */
    ck_assert(!c.connection_messages);
    ck_assert(c.log_format_mosquitto);
    conf_fini(&c);
    /* the defaults stay when a file does not set them; a later line replaces */
    ck_assert_int_eq(load_text(&c, "log_format mosquitto\nlog_format lunamq\n"), 0);
    ck_assert(!c.log_format_mosquitto);
    ck_assert(c.log_timestamp && c.connection_messages);
    ck_assert_ptr_null(c.user);
    ck_assert_ptr_null(c.pid_file);
    ck_assert_ptr_null(c.log_timestamp_format);
    conf_fini(&c);
    expect_error("user\n", 1, "user: missing value");
    expect_error("user lunamq other\n", 1, "user: unexpected 'other'");
    expect_error("pid_file\n", 1, "pid_file: missing value");
    expect_error("log_timestamp yes\n", 1, "log_timestamp: 'yes' is not true or false");
    expect_error("connection_messages 1\n", 1, "connection_messages: '1' is not true or false");
    expect_error("log_format json\n", 1, "log_format: 'json' is not lunamq or mosquitto");
    expect_error("log_timestamp_format\n", 1, "log_timestamp_format: missing value");
    expect_error("log_timestamp_format %c%c%c%c%c%c%c%c%c%c%c%c\n", 1, /* 12 x 24 bytes */
                 "log_timestamp_format: '%c%c%c%c%c%c%c%c%c%c%c%c' makes an empty timestamp or "
                 "one over 255 bytes");
}
END_TEST

/* A new temporary directory, by its real path (as conf_dir is). */
static void
temp_dir(char *dir, size_t len)
{
    char tmpl[] = "/tmp/lunamq-dir-XXXXXX";
    ck_assert_ptr_nonnull(mkdtemp(tmpl));
    char *real = realpath(tmpl, NULL);
    ck_assert_ptr_nonnull(real);
    snprintf(dir, len, "%s", real);
    free(real);
}

static void
write_file(const char *file, const char *text)
{
    FILE *f = fopen(file, "w");
    ck_assert_ptr_nonnull(f);
    fputs(text, f);
    fclose(f);
}

static void
expect_path(const char *got, const char *dir, const char *rel)
{
    char want[PATH_MAX + 64];
    snprintf(want, sizeof(want), "%s%s", dir, rel);
    ck_assert_str_eq(got, want);
}

/* Issue 18: scripts_dir, admin_socket, persistence_location and pid_file relative to the
 * main file's directory, also from an included file, and their defaults there: a service
 * runs from another working directory. */
START_TEST(test_paths_relative_to_file)
{
    char dir[PATH_MAX], main_conf[PATH_MAX + 32], inc[PATH_MAX + 32], inc_conf[PATH_MAX + 64];
    temp_dir(dir, sizeof(dir));
    snprintf(main_conf, sizeof(main_conf), "%s/lunamq.conf", dir);
    snprintf(inc, sizeof(inc), "%s/conf.d", dir);
    snprintf(inc_conf, sizeof(inc_conf), "%s/10-paths.conf", inc);
    ck_assert_int_eq(mkdir(inc, 0700), 0);
    struct lq_conf c;

    write_file(main_conf, "scripts_dir hooks\n"
                          "admin_socket run/admin sock\n"
                          "persistence_location ./data\n"
                          "pid_file lunamq.pid\n");
    conf_init(&c);
    ck_assert_int_eq(conf_load(&c, main_conf, err, sizeof(err)), 0);
    ck_assert_str_eq(c.conf_dir, dir);
    expect_path(c.scripts_dir, dir, "/hooks");
    expect_path(c.admin_socket, dir, "/run/admin sock");
    expect_path(c.persistence_location, dir, "/data");
    expect_path(c.pid_file, dir, "/lunamq.pid");
    conf_fini(&c);

    /* the same file named from its own directory, as `lunamq -c lunamq.conf` would */
    char cwd[PATH_MAX];
    ck_assert_ptr_nonnull(getcwd(cwd, sizeof(cwd)));
    ck_assert_int_eq(chdir(inc), 0);
    conf_init(&c);
    int rc = conf_load(&c, "../lunamq.conf", err, sizeof(err));
    ck_assert_int_eq(chdir(cwd), 0);
    ck_assert_int_eq(rc, 0);
    ck_assert_str_eq(c.conf_dir, dir);
    expect_path(c.scripts_dir, dir, "/hooks");
    conf_fini(&c);

    /* absolute ones as written; "none" is no socket; "." is the directory itself */
    write_file(main_conf, "scripts_dir /srv/hooks\n"
                          "admin_socket none\n"
                          "persistence_location .\n"
                          "pid_file /run/lunamq.pid\n");
    conf_init(&c);
    ck_assert_int_eq(conf_load(&c, main_conf, err, sizeof(err)), 0);
    ck_assert_str_eq(c.scripts_dir, "/srv/hooks");
    ck_assert_str_eq(c.admin_socket, "none");
    ck_assert_str_eq(c.persistence_location, dir);
    ck_assert_str_eq(c.pid_file, "/run/lunamq.pid");
    conf_fini(&c);

    /* not set: the defaults, in the file's directory; no pid file */
    write_file(main_conf, "# nothing\n");
    conf_init(&c);
    ck_assert_int_eq(conf_load(&c, main_conf, err, sizeof(err)), 0);
    expect_path(c.scripts_dir, dir, "/scripts");
    expect_path(c.admin_socket, dir, "/lunamq.sock");
    ck_assert_str_eq(c.persistence_location, dir);
    ck_assert_ptr_null(c.pid_file);
    conf_fini(&c);

    /* an included file's lines: against the main file's directory, not its own */
    write_file(inc_conf, "scripts_dir inc-hooks\npid_file run/lunamq.pid\n");
    char text[PATH_MAX + 64];
    snprintf(text, sizeof(text), "include_dir %s\n", inc);
    write_file(main_conf, text);
    conf_init(&c);
    ck_assert_int_eq(conf_load(&c, main_conf, err, sizeof(err)), 0);
    expect_path(c.scripts_dir, dir, "/inc-hooks");
    expect_path(c.pid_file, dir, "/run/lunamq.pid");
    expect_path(c.admin_socket, dir, "/lunamq.sock");
    conf_fini(&c);

    unlink(inc_conf);
    rmdir(inc);
    unlink(main_conf);
    rmdir(dir);
}
END_TEST

/* Issue 18: one run reports every error of a file, in order: lines of the main file and
 * of an included file (named by its own), then the checks at the end of the file. A bad
 * line is skipped: the lines after it still apply. */
START_TEST(test_every_error_reported)
{
    char dir[PATH_MAX], main_conf[PATH_MAX + 32], inc[PATH_MAX + 32], inc_conf[PATH_MAX + 64];
    temp_dir(dir, sizeof(dir));
    snprintf(main_conf, sizeof(main_conf), "%s/lunamq.conf", dir);
    snprintf(inc, sizeof(inc), "%s/conf.d", dir);
    snprintf(inc_conf, sizeof(inc_conf), "%s/a.conf", inc);
    ck_assert_int_eq(mkdir(inc, 0700), 0);
    write_file(inc_conf, "listener 1884\nbogus_option 1\n");
    char text[PATH_MAX + 256];
    snprintf(text, sizeof(text),
             "max_keepalive 5\n"
             "include_dir %s\n"
             "listener 8883\n"
             "certfile /s.crt\n"
             "log_type chatty\n"
             "max_inflight_messages 7\n",
             inc);
    write_file(main_conf, text);

    char lines[4][PATH_MAX + 128];
    snprintf(lines[0], sizeof(lines[0]),
             "%s:1: max_keepalive: '5' is not 0 (no limit) or 10..65535", main_conf);
    snprintf(lines[1], sizeof(lines[1]), "%s:2: unknown option 'bogus_option'", inc_conf);
    snprintf(lines[2], sizeof(lines[2]), "%s:5: log_type: unknown type 'chatty'", main_conf);
    snprintf(lines[3], sizeof(lines[3]),
             "%s:3: listener 8883: a TLS listener needs both certfile and keyfile", main_conf);
    char want[4 * sizeof(lines[0]) + 64], big[sizeof(want)];
    snprintf(want, sizeof(want), "%s\n%s\n%s\n%s", lines[0], lines[1], lines[2], lines[3]);

    struct lq_conf c;
    conf_init(&c);
    ck_assert_int_eq(conf_load(&c, main_conf, big, sizeof(big)), -1);
    ck_assert_str_eq(big, want);
    ck_assert_uint_eq(c.max_inflight_messages, 7); /* after the bad lines */
    ck_assert_uint_eq(c.listeners->port, 1884);
    conf_fini(&c);

    /* bounded by errlen: whole lines, then how many more */
    snprintf(want, sizeof(want), "%s\n%s\n...and 2 more errors", lines[0], lines[1]);
    conf_init(&c);
    ck_assert_int_eq(conf_load(&c, main_conf, big, strlen(want) + 1), -1);
    ck_assert_str_eq(big, want);
    conf_fini(&c);
    conf_init(&c);
    ck_assert_int_eq(conf_load(&c, main_conf, big, strlen(want)), -1); /* one byte short */
    snprintf(want, sizeof(want), "%s\n...and 3 more errors", lines[0]);
    ck_assert_str_eq(big, want);
    conf_fini(&c);
    /* the last one fits without a count after it */
    snprintf(want, sizeof(want), "%s\n%s\n%s\n...and 1 more error", lines[0], lines[1], lines[2]);
    conf_init(&c);
    ck_assert_int_eq(conf_load(&c, main_conf, big, strlen(want) + 1), -1);
    ck_assert_str_eq(big, want);
    conf_fini(&c);
    /* too small for the first line: cut, with the count kept */
    char small[40];
    conf_init(&c);
    ck_assert_int_eq(conf_load(&c, main_conf, small, sizeof(small)), -1);
    ck_assert_uint_eq(strlen(small), sizeof(small) - 1);
    ck_assert_str_eq(small + sizeof(small) - 1 - strlen("\n...and 3 more errors"),
                     "\n...and 3 more errors");
    ck_assert(strncmp(small, lines[0], strlen(small) - strlen("\n...and 3 more errors")) == 0);
    conf_fini(&c);

    unlink(inc_conf);
    rmdir(inc);
    unlink(main_conf);
    rmdir(dir);
}
END_TEST

/* A block's end-of-file check is left out when one of its lines was bad (it would only
 * repeat that line's error), and a block whose first line is bad takes its lines. */
START_TEST(test_errors_without_repeats)
{
    /* a bad address: not also "no address line" */
    expect_error("connection b\naddress h:0\ntopic t\n", 2, "address: '0' out of range 1..65535");
    expect_error("listener 8883\nkeyfile\ncertfile /s.crt\n", 2, "keyfile: missing value");
    /* but another block's check is still made, and a broker option is not the block's */
    struct lq_conf c;
    ck_assert_int_eq(
        load_text(&c, "connection a\ntopic t\nconnection b\naddress h:0\ntopic t\nmax_keepalive 5\n"
                      "connection c\naddress h\n"),
        -1);
    char want[1024];
    snprintf(want, sizeof(want),
             "%s:4: address: '0' out of range 1..65535\n"
             "%s:6: max_keepalive: '5' is not 0 (no limit) or 10..65535\n"
             "%s:1: connection a: no address line\n"
             "%s:7: connection c: no topic line",
             path, path, path, path);
    ck_assert_str_eq(err, want);
    conf_fini(&c);
    /* a second `connection b`: its lines (checked) do not go to the first b */
    ck_assert_int_eq(load_text(&c, "connection b\naddress h\ntopic t\n"
                                   "connection b\naddress h2\ntopic t2\nbridge_cafile\n"),
                     -1);
    snprintf(want, sizeof(want),
             "%s:4: connection: 'b' is already the name of the bridge at %s:1\n"
             "%s:7: bridge_cafile: missing value",
             path, path, path);
    ck_assert_str_eq(err, want);
    ck_assert_uint_eq(c.bridges->naddrs, 1);
    ck_assert_uint_eq(c.bridges->ntopics, 1);
    ck_assert_ptr_null(c.bridges->next);
    conf_fini(&c);
    /* a bad listener line: its TLS lines are not "must follow a listener line" */
    expect_error("listener 0\ncertfile /s.crt\nkeyfile /s.key\n", 1,
                 "listener: '0' out of range 1..65535");
    ck_assert_int_eq(load_text(&c, "listener 1883\nlistener 0\ncertfile /s.crt\n"), -1);
    ck_assert_ptr_null(c.listeners->tls); /* not given to the listener above */
    conf_fini(&c);
}
END_TEST

Suite *
suite_conf(void)
{
    Suite *s = suite_create("conf");
    TCase *tc = tcase_create("parse");
    tcase_add_test(tc, test_defaults);
    tcase_add_test(tc, test_every_option);
    tcase_add_test(tc, test_long_comments);
    tcase_add_test(tc, test_max_keepalive_zero);
    tcase_add_test(tc, test_tls_options);
    tcase_add_test(tc, test_hook_options);
    tcase_add_test(tc, test_errors);
    tcase_add_test(tc, test_include_dir);
    tcase_add_test(tc, test_paths_with_spaces);
    tcase_add_test(tc, test_durations);
    tcase_add_test(tc, test_persistence_options);
    tcase_add_test(tc, test_auth_options);
    tcase_add_test(tc, test_cluster_nats_options);
    tcase_add_test(tc, test_bridge_every_option);
    tcase_add_test(tc, test_bridge_defaults);
    tcase_add_test(tc, test_bridge_refused);
    tcase_add_test(tc, test_bridge_outside_block);
    tcase_add_test(tc, test_bridge_errors);
    tcase_add_test(tc, test_bridge_addresses);
    tcase_add_test(tc, test_bridge_topics);
    tcase_add_test(tc, test_bridge_include_dir);
    tcase_add_test(tc, test_bridge_equal);
    tcase_add_test(tc, test_service_options);
    tcase_add_test(tc, test_paths_relative_to_file);
    tcase_add_test(tc, test_every_error_reported);
    tcase_add_test(tc, test_errors_without_repeats);
    tcase_add_test(tc, test_websockets_options);
    suite_add_tcase(s, tc);
    return s;
}
