/* SPDX-License-Identifier: MIT */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <check.h>

#include "testpki.h"

char pki[64];

void
pki_make(void)
{
    strcpy(pki, "/tmp/lunamq-pki-XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(pki));
    char cmd[256];
    snprintf(cmd, sizeof(cmd), "sh examples/certs/make-certs.sh %s >/dev/null", pki);
    ck_assert_msg(system(cmd) == 0, "%s (run from the top of the tree)", cmd);
}

void
pki_remove(void)
{
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", pki);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", pki);
}
