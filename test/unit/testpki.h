/* SPDX-License-Identifier: MIT
 * The test PKI of examples/certs/make-certs.sh for the unit tests that need one
 * (test_tls.c, test_dial.c): made by a Check unchecked fixture, in its parent process. */
#ifndef LUNAMQ_TESTPKI_H
#define LUNAMQ_TESTPKI_H

extern char pki[64]; /* its directory, while a fixture holds it */
void pki_make(void);
void pki_remove(void);

#endif
