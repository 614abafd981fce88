/* SPDX-License-Identifier: MIT
 *
 * Configuration: defaults, every option, and every error as "FILE:LINE: message". */
#include <check.h>
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
    suite_add_tcase(s, tc);
    return s;
}
