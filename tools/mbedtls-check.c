/* SPDX-License-Identifier: MIT
 * make deps: proves the mbedTLS found is 3.6 and links (version and a SHA-256). */
#include <stdio.h>
#include <string.h>

#include <mbedtls/sha256.h>
#include <mbedtls/version.h>

int
main(int argc, char **argv)
{
    const char *which = argc > 1 ? argv[1] : "";
    char v[32];
    mbedtls_version_get_string(v);
    if (strncmp(v, "3.6.", 4) != 0 || MBEDTLS_VERSION_NUMBER < 0x03060000) {
        fprintf(stderr, "deps: mbedTLS %s is not 3.6\n", v);
        return 1;
    }
    unsigned char out[32];
    if (mbedtls_sha256((const unsigned char *)"abc", 3, out, 0) != 0 || out[0] != 0xba) {
        fprintf(stderr, "deps: mbedTLS SHA-256 self-check failed\n");
        return 1;
    }
    printf("deps: mbedTLS %s (%s) links\n", v, which);
    return 0;
}
