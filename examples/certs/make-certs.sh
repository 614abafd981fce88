#!/bin/sh
# Test PKI for lunamq's TLS listeners, made with the openssl CLI. For trying things
# out and for the tests: never use these keys in production.
#
#   examples/certs/make-certs.sh [DIR]      (default DIR: ./certs)
#
# DIR/ca.crt, ca.key           the operator's CA (ECDSA P-256)
# DIR/server.crt, server.key   server certificate for localhost and 127.0.0.1 (ECDSA P-256)
# DIR/server-rsa.crt/.key      the same with an RSA 2048 key
# DIR/dev1 .. dev3 .crt/.key   device certificates, CN dev1.. (ECDSA P-256, SAN URI urn:dev:N)
# DIR/revoked.crt/.key         a device certificate revoked in ca.crl
# DIR/expired.crt/.key         a device certificate that expired in 2021
# DIR/future.crt/.key          a device certificate valid from 2090
# DIR/other-ca.crt, stranger.crt/.key   a second CA and a device it signed
# DIR/ca.crl                   the CA's CRL, revoking revoked.crt
#
#   examples/certs/make-certs.sh DIR revoke NAME
#
# revokes DIR/NAME.crt in the CA of an existing DIR (made by the first form) and writes
# a new DIR/ca.crl listing it besides the ones revoked before; nothing else is remade.
# Then SIGHUP makes the broker load the new CRL (that is how the tests revoke dev2).
set -eu

dir=${1:-certs}
mkdir -p "$dir"
cd "$dir"

ca_conf() { # $1: CA name
    cat > "$1.cnf" <<EOF
[ ca ]
default_ca = this
[ this ]
dir = .
database = $1.index
serial = $1.serial
crlnumber = $1.crlnumber
new_certs_dir = $1.newcerts
certificate = $1.crt
private_key = $1.key
default_md = sha256
default_days = 825
default_crl_days = 30
policy = anything
unique_subject = no
copy_extensions = copy
[ anything ]
commonName = supplied
organizationName = optional
[ device ]
basicConstraints = CA:FALSE
keyUsage = digitalSignature
extendedKeyUsage = clientAuth
[ server ]
basicConstraints = CA:FALSE
keyUsage = digitalSignature, keyEncipherment
extendedKeyUsage = serverAuth
subjectAltName = DNS:localhost, IP:127.0.0.1
EOF
}

new_ca() { # $1: name, $2: CN
    ca_conf "$1"
    : > "$1.index"
    echo 1000 > "$1.serial"
    echo 1000 > "$1.crlnumber"
    mkdir -p "$1.newcerts"
    openssl ecparam -name prime256v1 -genkey -noout -out "$1.key" 2>/dev/null
    openssl req -new -x509 -key "$1.key" -out "$1.crt" -days 3650 -subj "/O=lunamq test/CN=$2" \
        -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign"
}

# $1: CA, $2: file name, $3: CN, $4: extensions section, $5..: extra `openssl ca` options
issue() {
    ca=$1 name=$2 cn=$3 ext=$4
    shift 4
    if [ "$name" = server-rsa ]; then
        openssl genrsa -out "$name.key" 2048 2>/dev/null
    else
        openssl ecparam -name prime256v1 -genkey -noout -out "$name.key" 2>/dev/null
    fi
    san=""
    case $cn in dev*) san="subjectAltName=URI:urn:dev:${cn#dev}" ;; esac
    if [ -n "$san" ]; then
        openssl req -new -key "$name.key" -out "$name.csr" -subj "/O=lunamq test/CN=$cn" -addext "$san"
    else
        openssl req -new -key "$name.key" -out "$name.csr" -subj "/O=lunamq test/CN=$cn"
    fi
    openssl ca -batch -config "$ca.cnf" -extensions "$ext" -in "$name.csr" -out "$name.crt" \
        -notext "$@" 2>/dev/null
    rm -f "$name.csr"
}

if [ "${2:-}" = revoke ]; then
    openssl ca -config ca.cnf -revoke "$3.crt" 2>/dev/null
    openssl ca -config ca.cnf -gencrl -out ca.crl 2>/dev/null
    echo "revoked $3; new CRL in $dir/ca.crl"
    exit 0
fi

new_ca ca "lunamq test CA"
issue ca server localhost server
issue ca server-rsa localhost server
for n in 1 2 3; do issue ca "dev$n" "dev$n" device; done
issue ca revoked revoked-device device
issue ca expired expired-device device -startdate 20200101000000Z -enddate 20210101000000Z
issue ca future future-device device -startdate 20900101000000Z -enddate 20910101000000Z
openssl ca -config ca.cnf -revoke revoked.crt 2>/dev/null
openssl ca -config ca.cnf -gencrl -out ca.crl 2>/dev/null

new_ca other-ca "another CA"
issue other-ca stranger dev1 device

chmod 600 ./*.key
echo "test PKI in $dir: ca.crt server.crt/.key dev1..3 revoked expired future stranger ca.crl"
