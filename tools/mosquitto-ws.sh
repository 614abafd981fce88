#!/usr/bin/env bash
# tools/mosquitto-ws.sh: a mosquitto broker built WITH websockets, for bench/websockets.py.
#
# Why: Debian 12's mosquitto package is built without websockets (a `protocol websockets`
# listener fails with "Unable to start any listening sockets"), so MQTT over WebSockets
# cannot be compared with the packaged broker. Nor can Debian's mosquitto source simply be
# rebuilt with WITH_WEBSOCKETS=yes against bookworm's libwebsockets-dev (4.1.6): that
# library is built without LWS_WITH_EXTERNAL_POLL, which mosquitto 2.0 needs (its build
# warns "Websocket performance will be unusable", and at run time no websockets listener
# is ever registered: the same "Unable to start any listening sockets", trixie's 2.0.21
# and bookworm's 2.0.11 alike). So this builds, from Debian's source packages:
#   1. bookworm's libwebsockets 4.1.6 (the version of libwebsockets-dev), as a static
#      library with LWS_WITH_EXTERNAL_POLL=ON and otherwise close to Debian's options
#      (OpenSSL, IPv6, HTTP/1 and WebSockets roles; no test apps, plugins, zlib, HTTP/2,
#      libcap, which the static library would need and mosquitto's Makefile does not link);
#   2. mosquitto (trixie's source, bookworm's if trixie's does not build) with
#      WITH_WEBSOCKETS=yes linked against it, TLS on (OpenSSL), without docs, SRV lookups,
#      cJSON or systemd.
# Only the broker binary is used (the static libwebsockets stays under lws/ beside it, the
# sources are removed):
#     build/deps/mosquitto-ws/mosquitto        (and build/deps/mosquitto-ws/version)
# It is checked before it is kept: a `protocol websockets` listener on a free loopback
# port must answer an upgrade with 101. Cached: nothing is done when the binary exists
# (rm -rf build/deps/mosquitto-ws to rebuild). Prints the binary's path on its last line.
#
# The sources come through a private apt configuration under build/deps/apt-ws (deb-src
# lines for trixie and bookworm; the system's sources and lists are not touched), with the
# mirror read from the machine's own apt sources at run time, as tools/deps.sh does.
# cmake and libssl-dev are installed with the system's apt-get when missing (root).
set -euo pipefail
cd "$(dirname "$0")/.."
top=$PWD
out=$top/build/deps/mosquitto-ws
bin=$out/mosquitto
apt_dir=$top/build/deps/apt-ws

say() { printf 'mosquitto-ws: %s\n' "$*" >&2; }

if [ -x "$bin" ]; then
    say "already built: $(cd "$out" && cat version 2>/dev/null || echo "?")"
    echo "$bin"
    exit 0
fi

# ---- build dependencies, from the system's apt sources (Debian 12) ----
need=()
for p in cmake libssl-dev build-essential dpkg-dev python3; do
    st=$(dpkg-query -W -f='${db:Status-Status}' "$p" 2>/dev/null || true)
    [ "$st" = installed ] || need+=("$p")
done
if [ ${#need[@]} -gt 0 ]; then
    [ "$(id -u)" -eq 0 ] || { say "missing packages (${need[*]}): run as root"; exit 1; }
    say "installing ${need[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y -q --no-install-recommends "${need[@]}" >&2 ||
        { apt-get update -q >&2 && apt-get install -y -q --no-install-recommends "${need[@]}" >&2; }
fi

# ---- the private apt configuration (tools/private-apt.sh, as tools/deps.sh) ----
aptopts=()
# shellcheck source=tools/private-apt.sh
. "$top/tools/private-apt.sh"
private_apt() {
    private_apt_setup "$apt_dir" "deb-src trixie" "deb-src bookworm" >&2
}

# fetch PACKAGE/SUITE DIR: Debian's source package unpacked (with its patches) in DIR/tree;
# prints the .dsc's name without .dsc
fetch_source() {
    local dir=$2 dsc
    rm -rf "$dir" && mkdir -p "$dir"
    (cd "$dir" && apt-get -q "${aptopts[@]}" source --download-only "$1" >&2) || return 1
    dsc=$(ls "$dir"/*.dsc 2>/dev/null | head -n 1)
    [ -n "$dsc" ] || { say "no source package for $1"; return 1; }
    # apt-get checked the files against the signed index; unpack with Debian's patches
    (cd "$dir" && dpkg-source -q -x --no-check "$dsc" tree >&2) || return 1
    basename "$dsc" .dsc
}

# libwebsockets with external poll, static, installed into $lws (include/, lib/)
lws=$out/lws
build_lws() {
    [ -f "$lws/lib/libwebsockets.a" ] && return 0
    local src=$out/src-lws name
    name=$(fetch_source libwebsockets/bookworm "$src") || return 1
    say "building $name (static, LWS_WITH_EXTERNAL_POLL=ON)"
    mkdir -p "$src/b"
    (cd "$src/b" && cmake ../tree -DCMAKE_BUILD_TYPE=Release -DCMAKE_C_FLAGS="-O2 -g" \
        -DLWS_WITH_EXTERNAL_POLL=ON -DLWS_WITH_STATIC=ON -DLWS_WITH_SHARED=OFF \
        -DLWS_WITH_SSL=ON -DLWS_IPV6=ON -DLWS_WITH_HTTP2=OFF -DLWS_WITH_ZLIB=OFF \
        -DLWS_WITH_PLUGINS=OFF -DLWS_WITHOUT_TESTAPPS=ON -DLWS_WITH_MINIMAL_EXAMPLES=OFF \
        -DLWS_WITHOUT_EXTENSIONS=ON -DLWS_WITH_LIBUV=OFF -DLWS_WITH_LIBEV=OFF \
        -DLWS_WITH_LIBEVENT=OFF -DLWS_WITH_GLIB=OFF -DDISABLE_WERROR=ON -DLWS_HAVE_LIBCAP=0 \
        >"$src/cmake.log" 2>&1) || { tail -n 30 "$src/cmake.log" >&2; return 1; }
    make -C "$src/b" -j"$(nproc)" websockets >"$src/build.log" 2>&1 ||
        { tail -n 30 "$src/build.log" >&2; return 1; }
    grep -q '^#define LWS_WITH_EXTERNAL_POLL' "$src/b/include/lws_config.h" ||
        { say "libwebsockets built without external poll"; return 1; }
    rm -rf "$lws" && mkdir -p "$lws/include" "$lws/lib"
    cp -r "$src/tree/include/." "$lws/include/"
    cp -r "$src/b/include/." "$lws/include/" # lws_config.h and the generated headers
    cp "$src/b/lib/libwebsockets.a" "$lws/lib/"
    echo "$name" > "$lws/version"
    rm -rf "$src"
}

# build SUITE: fetch mosquitto's source of that suite, build src/mosquitto with websockets
build() {
    local suite=$1 src=$out/src-$1 name
    name=$(fetch_source "mosquitto/$suite" "$src") || return 1
    say "building $name with websockets ($(cat "$lws/version"))"
    # src/Makefile builds the broker alone (it compiles what it needs of lib/ itself);
    # -I and -L put our libwebsockets (only a static one there) before the system's
    make -C "$src/tree/src" -j"$(nproc)" mosquitto \
        CPPFLAGS="-I$lws/include" LDFLAGS="-L$lws/lib" WITH_WEBSOCKETS=yes WITH_TLS=yes WITH_TLS_PSK=yes WITH_DOCS=no WITH_SRV=no \
        WITH_CJSON=no WITH_SYSTEMD=no WITH_WRAP=no WITH_DLT=no WITH_BUNDLED_DEPS=yes \
        CFLAGS="-O2 -g" >"$src/build.log" 2>&1 || { tail -n 30 "$src/build.log" >&2; return 1; }
    [ -x "$src/tree/src/mosquitto" ] || return 1
    ws_check "$src/tree/src/mosquitto" || return 1
    cp "$src/tree/src/mosquitto" "$bin.new"
    echo "$name with $(cat "$lws/version")" > "$out/version"
    mv "$bin.new" "$bin"
    rm -rf "$src"
}

# ws_check BINARY: a `protocol websockets` listener on a free loopback port comes up and
# answers an upgrade with 101 (what the packaged broker cannot do)
ws_check() {
    local port conf=$out/check.conf pid ok=1
    port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
    printf 'listener %s 127.0.0.1\nprotocol websockets\nallow_anonymous true\nuser root\n' "$port" > "$conf"
    "$1" -c "$conf" >"$out/check.log" 2>&1 &
    pid=$!
    for _ in $(seq 50); do
        if python3 - "$port" <<'PY' 2>/dev/null; then
import socket, sys
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=2)
s.sendall(b"GET /mqtt HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
          b"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
          b"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: mqtt\r\n\r\n")
sys.exit(0 if s.recv(4096).startswith(b"HTTP/1.1 101") else 1)
PY
            ok=0; break
        fi
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    kill "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    [ $ok -eq 0 ] || { say "the build does not serve websockets:"; cat "$out/check.log" >&2; }
    rm -f "$conf"
    return $ok
}

mkdir -p "$out"
private_apt
build_lws || { say "could not build libwebsockets"; exit 1; }
if ! build trixie; then
    say "trixie's mosquitto did not build with libwebsockets 4.1.6: trying bookworm's"
    build bookworm || { say "could not build mosquitto with websockets"; exit 1; }
fi
say "built $(cat "$out/version") into build/deps/mosquitto-ws/mosquitto"
echo "$bin"
