/* SPDX-License-Identifier: MIT
 *
 * The one Check runner: every module's suite is added here. CK_RUN_SUITE=name runs
 * one suite, CK_FORK=no runs in-process for a debugger. */
#include <check.h>
#include <stdlib.h>

#include "suites.h"

int
main(void)
{
    SRunner *sr = srunner_create(suite_mqtt_codec());
    srunner_add_suite(sr, suite_topic());
    srunner_add_suite(sr, suite_retain());
    srunner_add_suite(sr, suite_conf());
    srunner_add_suite(sr, suite_hooks());
    srunner_add_suite(sr, suite_conn());
    srunner_add_suite(sr, suite_dial());
    srunner_add_suite(sr, suite_log());
    srunner_add_suite(sr, suite_store());
    srunner_add_suite(sr, suite_auth());
    srunner_add_suite(sr, suite_tls());
    srunner_add_suite(sr, suite_cluster());
    srunner_add_suite(sr, suite_bridge());
    srunner_add_suite(sr, suite_service());
    srunner_add_suite(sr, suite_kv());
    srunner_add_suite(sr, suite_httpc());
    srunner_add_suite(sr, suite_httpd());
    srunner_add_suite(sr, suite_ws());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
