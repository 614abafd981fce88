#!/usr/bin/env bash
# make deps: install every build and test dependency that is missing.
#  1. Debian packages, with apt-get (only when something is missing); then Node.js
#     (node and npm: Debian's nodejs, and Debian's npm only when that nodejs has none)
#     and test/e2e/js/node_modules (MQTT.js and puppeteer-core for the WebSocket tests,
#     npm ci from the lock file: again only when the lock file changed since the last
#     install, which test/e2e/js/node_modules/.lunamq-lock remembers).
#  2. mbedTLS 3.6, two builds, both through a private apt configuration under
#     build/deps/apt (the system's sources and lists are not touched; the mirror is
#     read from the machine's own apt sources at run time):
#     - our own (the default): Debian 13's source package, built as static libraries
#       with tools/mbedtls-config.h and tools/mbedtls-lunamq.patch under
#       build/deps/mbedtls, cached there (rebuilt when the source, the configuration
#       or the patch changes);
#     - the packaged one (the fallback, and what the TLS tests also run against):
#       the system's when pkg-config has >= 3.6, otherwise Debian 13's libmbedtls-dev
#       and its three runtime packages unpacked with dpkg -x under build/deps/root.
#     MBEDTLS=packaged (make deps MBEDTLS=packaged) builds lunamq with the packaged one.
# Writes build/deps/mbedtls-own.mk and build/deps/mbedtls-packaged.mk (MBEDTLS_CFLAGS,
# MBEDTLS_LIBS), and build/deps/mbedtls.mk, the one the Makefile uses.
set -euo pipefail
cd "$(dirname "$0")/.."
top=$PWD
deps=$top/build/deps
mk=$deps/mbedtls.mk

say() { printf 'deps: %s\n' "$*"; }

# ---- 1. Debian packages ----
pkgs=(build-essential pkg-config libevent-dev check liblua5.4-dev lua5.4 lua-cjson clang
      libclang-rt-dev mosquitto mosquitto-clients python3 python3-paho-mqtt openssl curl
      valgrind ca-certificates libnats-dev nats-server python3-cryptography
      libcurl4-openssl-dev  # broker.http from hooks (libcurl's multi interface)
      chromium              # test/e2e/35-dashboard.py loads the dashboard in a real browser
      man-db groff-base  # test/e2e/32-man.py renders man/
      # make deb and its test: dpkg-buildpackage with debhelper, lintian, systemd-analyze,
      # adduser for the package's postinst
      debhelper dpkg-dev lintian systemd adduser)
missing=()
for p in "${pkgs[@]}"; do
    st=$(dpkg-query -W -f='${db:Status-Status}' "$p" 2>/dev/null || true)
    [ "$st" = installed ] || missing+=("$p")
done
apt_updated=0
apt_install() { # PACKAGE...: as root, with apt-get, no daemon started by package scripts
    [ "$(id -u)" -eq 0 ] || { say "missing packages ($*): run as root"; exit 1; }
    say "installing $*"
    export DEBIAN_FRONTEND=noninteractive
    [ "$apt_updated" -eq 1 ] || { apt-get update -q; apt_updated=1; }
    # no daemon start from package scripts: tests start their own brokers
    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d
    trap 'rm -f /usr/sbin/policy-rc.d' EXIT
    apt-get install -y -q --no-install-recommends "$@"
    rm -f /usr/sbin/policy-rc.d
    trap - EXIT
}
if [ ${#missing[@]} -gt 0 ]; then
    apt_install "${missing[@]}"
else
    say "Debian packages present"
fi

# -- Node.js, and the npm packages of test/e2e/js --
# node: any (Debian's nodejs, or one installed otherwise, e.g. with its own npm);
# Debian's npm only when there is still no npm once node is there
if ! command -v node >/dev/null 2>&1; then
    apt_install nodejs
fi
if ! command -v npm >/dev/null 2>&1; then
    apt_install npm
fi
if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
    say "node or npm still missing after installing nodejs and npm"; exit 1
fi
js=$top/test/e2e/js
js_stamp=$js/node_modules/.lunamq-lock
# what was installed: the lock file and package.json (npm ci refuses them out of step)
js_want=$(cat "$js/package-lock.json" "$js/package.json" | sha256sum | cut -d' ' -f1)
if [ -d "$js/node_modules" ] && [ -f "$js_stamp" ] && [ "$(cat "$js_stamp")" = "$js_want" ]; then
    say "test/e2e/js/node_modules up to date (node $(node --version))"
else
    say "npm ci in test/e2e/js (MQTT.js, puppeteer-core; node $(node --version), npm $(npm --version))"
    # puppeteer-core downloads no browser: the tests use Debian's chromium
    (cd "$js" && PUPPETEER_SKIP_DOWNLOAD=1 npm ci --no-audit --no-fund --loglevel=warn)
    echo "$js_want" > "$js_stamp"
fi

# ---- 2. mbedTLS 3.6 ----
apt_dir=$deps/apt
aptopts=()
# the private apt configuration (tools/private-apt.sh), set up and updated once per run
# shellcheck source=tools/private-apt.sh
. "$top/tools/private-apt.sh"
private_apt() {
    [ ${#aptopts[@]} -eq 0 ] || return 0
    private_apt_setup "$apt_dir" "deb trixie" "deb-src trixie"
}

mk_is_valid() { # FILE: its libraries exist
    [ -f "$1" ] || return 1
    local libs f
    libs=$(sed -n 's/^MBEDTLS_LIBS := //p' "$1")
    [ -n "$libs" ] || return 1
    for f in $libs; do case $f in /*) [ -f "$f" ] || return 1 ;; esac; done
    return 0
}

write_mk() { # FILE KIND CFLAGS LIBS [BUILD]: rewritten only when it changes (objects depend
    local tmp=$1.tmp # on it: a new build, even at the same paths, has other structure layouts)
    printf 'MBEDTLS_KIND := %s\nMBEDTLS_CFLAGS := %s\nMBEDTLS_LIBS := %s\nMBEDTLS_BUILD := %s\n' \
        "$2" "$3" "$4" "${5:-}" > "$tmp"
    if cmp -s "$tmp" "$1"; then rm -f "$tmp"; else mv "$tmp" "$1"; fi
}

# -- the packaged mbedTLS --
packaged_mk=$deps/mbedtls-packaged.mk
mkdir -p "$deps"
if pkg-config --atleast-version=3.6 mbedtls 2>/dev/null; then
    write_mk "$packaged_mk" packaged "$(pkg-config --cflags mbedtls | sed 's/-I/-isystem /g')" \
        "$(pkg-config --libs mbedtls mbedx509 mbedcrypto)"
    say "packaged mbedTLS $(pkg-config --modversion mbedtls) from the system"
elif mk_is_valid "$packaged_mk"; then
    say "packaged mbedTLS already unpacked in build/deps/root"
else
    say "fetching the packaged mbedTLS 3.6 from Debian 13 (trixie)"
    private_apt
    rm -rf "$apt_dir/debs" "$deps/root"
    mkdir -p "$apt_dir/debs" "$deps/root"
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
    write_mk "$packaged_mk" packaged "-isystem $inc" \
        "$libdir/libmbedtls.a $libdir/libmbedx509.a $libdir/libmbedcrypto.a"
    say "packaged mbedTLS $ver unpacked in build/deps/root"
fi

# -- our own build --
own_mk=$deps/mbedtls-own.mk
own=$deps/mbedtls
build_own() {
    # the cache: our configuration and patch as built last time (a newer Debian
    # source is picked up after `rm -rf build/deps/mbedtls`)
    local stamp
    stamp=$(cat tools/mbedtls-config.h tools/mbedtls-lunamq.patch | sha256sum | cut -c1-16)
    if [ -f "$own/stamp" ] && [ "$(cut -d' ' -f1 "$own/stamp")" = "$stamp" ] && mk_is_valid "$own_mk"; then
        return 0
    fi
    private_apt || return 1
    local src=$deps/mbedtls-src
    rm -rf "$src" && mkdir -p "$src"
    (cd "$src" && apt-get -q "${aptopts[@]}" source --download-only mbedtls) || return 1
    local dsc
    dsc=$(ls "$src"/mbedtls_3.6.*.dsc 2>/dev/null | head -n 1)
    [ -n "$dsc" ] || { say "no mbedTLS 3.6 source package in trixie"; return 1; }
    # apt-get checked the files against the signed index; unpack with Debian's patches
    (cd "$src" && dpkg-source -q -x --no-check "$dsc" tree) || return 1
    local t=$src/tree
    if patch -s -p1 --dry-run -d "$t" < tools/mbedtls-lunamq.patch; then
        patch -s -p1 -d "$t" < tools/mbedtls-lunamq.patch
    else
        say "warning: tools/mbedtls-lunamq.patch does not apply to $(basename "$dsc"): built without it"
    fi
    cp tools/mbedtls-config.h "$t/include/mbedtls/mbedtls_config.h"
    say "building $(basename "$dsc" .dsc) with tools/mbedtls-config.h"
    make -s -C "$t/library" -j"$(nproc)" CFLAGS="-O2 -g" \
        libmbedcrypto.a libmbedx509.a libmbedtls.a >/dev/null || return 1
    rm -rf "$own" && mkdir -p "$own/lib"
    cp -r "$t/include" "$own/include"
    cp -r "$t/3rdparty/everest/include/everest" "$own/include/"
    cp "$t"/library/libmbed*.a "$own/lib/"
    echo "$stamp $(basename "$dsc" .dsc)" > "$own/stamp"
    rm -rf "$src"
    write_mk "$own_mk" own "-isystem $own/include" \
        "$own/lib/libmbedtls.a $own/lib/libmbedx509.a $own/lib/libmbedcrypto.a" "$(cat "$own/stamp")"
}
if [ "${MBEDTLS:-own}" = own ]; then
    if build_own; then
        cp "$own_mk" "$deps/mbedtls.mk.new"
        say "mbedTLS: our own build of $(cut -d' ' -f2 "$own/stamp")"
    else
        say "warning: could not build our own mbedTLS: using the packaged one (slower handshakes)"
        cp "$packaged_mk" "$deps/mbedtls.mk.new"
    fi
else
    cp "$packaged_mk" "$deps/mbedtls.mk.new"
    say "mbedTLS: the packaged one (MBEDTLS=$MBEDTLS)"
fi
if cmp -s "$deps/mbedtls.mk.new" "$mk"; then rm -f "$deps/mbedtls.mk.new"; else mv "$deps/mbedtls.mk.new" "$mk"; fi

# prove that each links and runs
for m in "$mk" "$packaged_mk"; do
    cflags=$(sed -n 's/^MBEDTLS_CFLAGS := //p' "$m")
    libs=$(sed -n 's/^MBEDTLS_LIBS := //p' "$m")
    # shellcheck disable=SC2086
    cc -std=c11 $cflags tools/mbedtls-check.c $libs -lpthread -o "$deps/mbedtls-check"
    "$deps/mbedtls-check" "$(sed -n 's/^MBEDTLS_KIND := //p' "$m")"
done
