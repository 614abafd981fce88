# SPDX-License-Identifier: MIT
"""Device certificates verified once (issue 15, broker/net/tls_trust.c): a device that
reconnects with the certificate whose chain was verified before is vouched for
without verifying the chain again; what else a handshake checks still holds (the
handshake signature, dates, revocation: test/e2e/15-tls.py runs every refusal case
through this path too, its listeners have a CRL). A CRL the broker cannot verify
against the CA list leaves the listener on mbedTLS's own verification.

With a packaged mbedTLS (no CA callback that vouches, make tls-packaged) nothing is
remembered: the counters stay at 0 and every connection is verified in full."""

import json
import os
import shutil
import subprocess
import tempfile

from lqtest import BIN, CTL, ROOT, conf, pki_dir, wait_for

HOST = "127.0.0.1"
MTLS = ("listener {tls_port} 127.0.0.1", "cafile {pki}/ca.crt", "certfile {pki}/server.crt",
        "keyfile {pki}/server.key", "crlfile {pki}/ca.crl", "require_certificate true",
        "use_identity_as_username true")
OWN = "lunamq's build" in subprocess.run([BIN, "--version"], capture_output=True,
                                          text=True).stdout


def stats(b):
    r = subprocess.run([CTL, "-s", b.admin, "--json", "stats"], capture_output=True, text=True,
                       timeout=10)
    return json.loads(r.stdout)


def pub(b, dev, pki=None):
    d = pki or pki_dir()
    return subprocess.run(["mosquitto_pub", "-h", HOST, "-p", str(b.tls_port), "--cafile",
                           d + "/ca.crt", "--cert", "%s/%s.crt" % (d, dev), "--key",
                           "%s/%s.key" % (d, dev), "-t", "t/" + dev, "-m", "x", "-q", "1"],
                          capture_output=True, timeout=15)


@conf(*MTLS)
def test_reconnecting_device_is_vouched_for(b):
    for _ in range(3):
        assert pub(b, "dev1").returncode == 0
    assert pub(b, "dev2").returncode == 0
    s = stats(b)
    if OWN:
        assert (s["tls_certs_verified"], s["tls_certs_remembered"]) == (2, 2), s
    else:
        assert (s["tls_certs_verified"], s["tls_certs_remembered"]) == (0, 0), s
    # a vouched-for device keeps its identity: use_identity_as_username makes its
    # certificate's CN the username every time
    assert b.output().count('username "dev1"') == 3, b.output()


@conf(*MTLS)
def test_refused_devices_are_never_remembered(b):
    for dev in ("revoked", "expired", "stranger", "revoked"):
        assert pub(b, dev).returncode != 0
    assert "revoked" in b.output()
    s = stats(b)
    assert (s["tls_certs_verified"], s["tls_certs_remembered"]) == (0, 0), s


def test_crl_of_another_ca_falls_back_to_full_verification(_b):
    """crlfile holds a CRL signed by a CA that is not in cafile: the broker cannot
    check that CRL once, so it leaves verification (and that CRL) to mbedTLS, which
    skips a CRL of another issuer; the device connects, the revoked one does not."""
    from lqtest import Broker
    d = tempfile.mkdtemp(prefix="lunamq-pki3-")
    try:
        pki = os.path.join(d, "pki")
        shutil.copytree(pki_dir(), pki)
        subprocess.run(["openssl", "ca", "-config", "other-ca.cnf", "-gencrl", "-out",
                        "other.crl"], cwd=pki, check=True, capture_output=True)
        with open(os.path.join(pki, "both.crl"), "w") as out:
            for f in ("ca.crl", "other.crl"):
                out.write(open(os.path.join(pki, f)).read())
        lines = [x.replace("{pki}", pki) for x in MTLS]
        lines = [x.replace("/ca.crl", "/both.crl") for x in lines]
        b = Broker(conf_lines=lines)
        b.start()
        try:
            assert pub(b, "dev1", pki).returncode == 0
            assert pub(b, "dev1", pki).returncode == 0
            assert pub(b, "revoked", pki).returncode != 0
            if OWN:
                assert wait_for(lambda: "verified in full at every handshake" in b.output(), 5)
            s = stats(b)
            assert s["tls_certs_remembered"] == 0, s
        finally:
            b.stop()
    finally:
        shutil.rmtree(d, ignore_errors=True)


@conf(*MTLS)
def test_vouched_device_still_proves_its_key(b):
    """The chain is vouched for, the handshake signature is not: a client with dev1's
    certificate and another key (a stolen certificate, which is public) is refused
    after dev1 itself was remembered."""
    assert pub(b, "dev1").returncode == 0
    d = tempfile.mkdtemp(prefix="lunamq-thief-")
    try:
        # OpenSSL's clients refuse a mismatched pair; a raw TLS 1.2 client built on
        # Python's ssl does too, so the thief is mbedTLS's own: lunamq-bench's TLS
        # client loads certfile and keyfile without comparing them
        bench = os.path.join(os.path.dirname(BIN), "lunamq-bench")
        p = pki_dir()
        r = subprocess.run([bench, "conn", "-p", str(b.tls_port), "-n", "1", "-d", "1",
                            "--cafile", p + "/ca.crt", "--cert", p + "/dev1.crt", "--key",
                            p + "/dev2.key"], capture_output=True, text=True, timeout=30)
        out = r.stdout + r.stderr
        assert wait_for(lambda: "TLS handshake failed" in b.output(), 5), out + b.output()
        assert b.output().count('username "dev1"') == 1, b.output()
        if OWN:  # its chain was vouched for, and still its handshake signature failed
            assert stats(b)["tls_certs_remembered"] == 1, stats(b)
    finally:
        shutil.rmtree(d, ignore_errors=True)
