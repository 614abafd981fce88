#!/usr/bin/env bash
# make deps: install every build and test dependency that is missing.
#  1. Debian packages, with apt-get (only when something is missing).
#  2. mbedTLS >= 3.6: the system's when pkg-config has it; otherwise Debian 13's
#     libmbedtls-dev and its three runtime packages, fetched with a private apt
#     configuration under build/deps/apt (the system's sources and lists are not
#     touched), unpacked with dpkg -x under build/deps/root, linked statically.
#     The mirror is read from the machine's own apt sources at run time.
# Writes build/deps/mbedtls.mk (MBEDTLS_CFLAGS, MBEDTLS_LIBS) for the Makefile.
set -euo pipefail
cd "$(dirname "$0")/.."
top=$PWD
deps=$top/build/deps
mk=$deps/mbedtls.mk

say() { printf 'deps: %s\n' "$*"; }

# ---- 1. Debian packages ----
pkgs=(build-essential pkg-config libevent-dev check liblua5.4-dev lua5.4 lua-cjson clang
      libclang-rt-dev mosquitto mosquitto-clients python3 python3-paho-mqtt openssl curl
      valgrind ca-certificates)
missing=()
for p in "${pkgs[@]}"; do
    st=$(dpkg-query -W -f='${db:Status-Status}' "$p" 2>/dev/null || true)
    [ "$st" = installed ] || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
    [ "$(id -u)" -eq 0 ] || { say "missing packages (${missing[*]}): run as root"; exit 1; }
    say "installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q
    # no daemon start from package scripts: tests start their own brokers
    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d
    trap 'rm -f /usr/sbin/policy-rc.d' EXIT
    apt-get install -y -q --no-install-recommends "${missing[@]}"
    rm -f /usr/sbin/policy-rc.d
    trap - EXIT
else
    say "Debian packages present"
fi

# ---- 2. mbedTLS 3.6 ----
mk_is_valid() {
    [ -f "$mk" ] || return 1
    local libs
    libs=$(sed -n 's/^MBEDTLS_LIBS := //p' "$mk")
    [ -n "$libs" ] || return 1
    for f in $libs; do case $f in /*) [ -f "$f" ] || return 1 ;; esac; done
    return 0
}

if pkg-config --atleast-version=3.6 mbedtls 2>/dev/null; then
    mkdir -p "$deps"
    {
        echo "MBEDTLS_CFLAGS := $(pkg-config --cflags mbedtls)"
        echo "MBEDTLS_LIBS := $(pkg-config --libs mbedtls mbedx509 mbedcrypto)"
    } > "$mk"
    say "mbedTLS $(pkg-config --modversion mbedtls) from the system"
elif mk_is_valid; then
    say "mbedTLS already unpacked in build/deps"
else
    say "fetching mbedTLS 3.6 from Debian 13 (trixie)"
    apt_dir=$deps/apt
    rm -rf "$apt_dir" "$deps/root"
    mkdir -p "$apt_dir/lists/partial" "$apt_dir/cache/archives/partial" "$apt_dir/debs" "$deps/root"
    # the mirror this machine already uses for Debian (deb822 sources, then sources.list)
    uri=""
    for f in /etc/apt/sources.list.d/*.sources; do
        [ -f "$f" ] || continue
        uri=$(awk 'BEGIN{RS=""} /Suites:[^\n]*bookworm([ \n]|$)/ && !/security/ {
                     if (match($0, /URIs:[ \t]*[^ \t\n]+/)) { s=substr($0,RSTART,RLENGTH); sub(/URIs:[ \t]*/,"",s); print s; exit } }' "$f")
        [ -n "$uri" ] && break
    done
    if [ -z "$uri" ] && [ -f /etc/apt/sources.list ]; then
        uri=$(awk '$1=="deb" && $0 !~ /security/ { for (i=2;i<=NF;i++) if ($i ~ /^[a-z]+:\/\//) { print $i; exit } }' /etc/apt/sources.list)
    fi
    [ -n "$uri" ] || { say "cannot find a Debian mirror in /etc/apt/sources*"; exit 1; }
    keyring=/usr/share/keyrings/debian-archive-keyring.gpg
    echo "deb [signed-by=$keyring] $uri trixie main" > "$apt_dir/sources.list"
    aptopts=(-o "Dir::Etc::sourcelist=$apt_dir/sources.list" -o "Dir::Etc::sourceparts=/dev/null"
             -o "Dir::State::Lists=$apt_dir/lists" -o "Dir::Cache=$apt_dir/cache"
             -o "Dir::State::status=/dev/null" -o "APT::Get::List-Cleanup=0" -o "APT::Sandbox::User=root")
    apt-get -q "${aptopts[@]}" update
    (cd "$apt_dir/debs" && apt-get -q "${aptopts[@]}" download \
        libmbedtls-dev libmbedcrypto16 libmbedtls21 libmbedx509-7)
    for deb in "$apt_dir"/debs/*.deb; do dpkg -x "$deb" "$deps/root"; done
    inc=$deps/root/usr/include
    libdir=$(dirname "$(find "$deps/root" -name libmbedtls.a | head -n 1)")
    if [ ! -f "$inc/mbedtls/build_info.h" ] || [ ! -f "$libdir/libmbedtls.a" ]; then
        say "mbedTLS headers or static libraries missing after unpacking"; exit 1
    fi
    ver=$(sed -n 's/^#define MBEDTLS_VERSION_STRING *"\(.*\)"/\1/p' "$inc/mbedtls/build_info.h")
    case $ver in 3.6.*) ;; *) say "unexpected mbedTLS version '$ver'"; exit 1 ;; esac
    {
        echo "MBEDTLS_CFLAGS := -I$inc"
        echo "MBEDTLS_LIBS := $libdir/libmbedtls.a $libdir/libmbedx509.a $libdir/libmbedcrypto.a"
    } > "$mk"
    say "mbedTLS $ver unpacked in build/deps/root"
fi

# prove that it links and runs
cflags=$(sed -n 's/^MBEDTLS_CFLAGS := //p' "$mk")
libs=$(sed -n 's/^MBEDTLS_LIBS := //p' "$mk")
# shellcheck disable=SC2086
cc -std=c11 $cflags tools/mbedtls-check.c $libs -o "$deps/mbedtls-check"
"$deps/mbedtls-check"
