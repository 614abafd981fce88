#!/usr/bin/env bash
# The Debian package, end to end (make pkg-test, the last step of make test; as root):
# make deb, lintian (errors fail, the rest is listed), dpkg -i on this machine, every file
# with its owner and mode, the lunamq user, the configuration checked (lunamq -t) and run
# (a copy on a free loopback port: the broker becomes lunamq and keeps its journal in
# /var/lib/lunamq), systemd-analyze verify on the installed unit, dpkg --purge and nothing
# left. The machine is left as it was, on failure too: the package purged, the user made
# for the test removed, the broker stopped.
set -euo pipefail
cd "$(dirname "$0")/../.."

say() { printf 'pkg: %s\n' "$*"; }
fail() {
    printf 'pkg: FAILED: %s\n' "$*" >&2
    exit 1
}
t0=$(date +%s%N)
lap() { # what was just done, and the seconds since the start
    say "$1 ($((($(date +%s%N) - t0) / 1000000))ms)"
}

[ "$(id -u)" -eq 0 ] || fail "run as root (dpkg -i, the broker's user)"
status=$(dpkg-query -W -f='${db:Status-Status}' lunamq 2>/dev/null || true)
[ -z "$status" ] || [ "$status" = not-installed ] ||
    fail "a lunamq package is on this machine ($status): the test would replace and purge it"

# Options of issue 18 that other branches add. While this build does not know one, its
# line is left out of the copy that is run, and said so (NOT TESTED). Empty this list
# once they are all merged: then the configuration must parse as shipped.
pending=()

tmp=$(mktemp -d /tmp/lunamq-pkg.XXXXXX)
chmod 0755 "$tmp"
user_was_there=false
getent passwd lunamq >/dev/null && user_was_there=true
policy_made=false
pid=""
cleanup() {
    local rc=$?
    set +e
    if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
        kill "$pid"
        for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill -9 "$pid" 2>/dev/null
    fi
    if dpkg-query -W -f='${db:Status-Status}' lunamq 2>/dev/null | grep -qv not-installed; then
        dpkg --purge lunamq >"$tmp/purge-cleanup.log" 2>&1 || cat "$tmp/purge-cleanup.log" >&2
    fi
    if ! $user_was_there && getent passwd lunamq >/dev/null; then
        userdel lunamq
        getent group lunamq >/dev/null && groupdel lunamq
    fi
    $policy_made && rm -f /usr/sbin/policy-rc.d
    rm -rf "$tmp"
    exit $rc
}
trap cleanup EXIT
trap 'exit 1' INT TERM

# ---- build ----
make --no-print-directory deb
version=$(dpkg-parsechangelog -S Version)
arch=$(dpkg-architecture -q DEB_HOST_ARCH)
deb=build/lunamq_${version}_${arch}.deb
[ -f "$deb" ] || fail "$deb not built"
broker_version=$(sed -n 's/^#define LUNAMQ_VERSION "\(.*\)"/\1/p' include/lq.h)
[ "$version" = "$broker_version" ] ||
    fail "debian/changelog says $version, include/lq.h $broker_version: one of them is stale"
lap "built $deb"

# ---- lintian ----
# as nobody (lintian warns about running as root), on a copy it can read wherever the tree is
cp "$deb" "$tmp/" && chmod 0644 "$tmp/${deb#build/}"
rc=0
# (from $tmp: nobody may not enter the tree's directory, e.g. a clone made with mktemp -d)
(cd "$tmp" && runuser -u nobody -- lintian --display-info --no-cfg "$tmp/${deb#build/}") \
    >"$tmp/lintian.log" 2>&1 ||
    rc=$?
if [ -s "$tmp/lintian.log" ]; then
    say "lintian:"
    sed 's/^/    /' "$tmp/lintian.log"
else
    say "lintian: no tag"
fi
! grep -q '^E: ' "$tmp/lintian.log" || fail "lintian errors (above)"
[ $rc -eq 0 ] || fail "lintian: exit status $rc"
lap "lintian"

# ---- install ----
# no service start from the package scripts (there is no systemd here anyway)
if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d
    policy_made=true
fi
dpkg -i "$deb" >"$tmp/install.log" 2>&1 || {
    cat "$tmp/install.log"
    fail "dpkg -i"
}
dpkg -L lunamq >"$tmp/files"
lap "installed"

# PATH OWNER:GROUP MODE [TYPE]: one installed thing
check() {
    local path=$1 want="$2 $3" got
    [ -e "$path" ] || fail "$path: missing"
    got=$(stat -c '%U:%G %a' "$path")
    [ "$got" = "$want" ] || fail "$path: $got, want $want"
    case ${4:-f} in
    d) [ -d "$path" ] || fail "$path: not a directory" ;;
    f) [ -f "$path" ] || fail "$path: not a file" ;;
    esac
}
check /usr/sbin/lunamq root:root 755
check /usr/bin/lunamq-ctl root:root 755
check /etc/lunamq root:root 755 d
check /etc/lunamq/lunamq.conf root:root 644
check /etc/lunamq/conf.d root:root 755 d
check /etc/lunamq/conf.d/README root:root 644
check /etc/lunamq/scripts root:root 755 d
check /etc/lunamq/scripts/README root:root 644
check /var/lib/lunamq lunamq:lunamq 750 d
check /usr/lib/systemd/system/lunamq.service root:root 644
check /usr/share/doc/lunamq/copyright root:root 644
check /usr/share/doc/lunamq/examples/hooks root:root 755 d
for m in man/*.[1-8]; do
    [ -f "$m" ] || continue
    n=${m#man/}
    check "/usr/share/man/man${n##*.}/$n.gz" root:root 644
done
for f in /etc/lunamq/lunamq.conf /etc/lunamq/conf.d/README /etc/lunamq/scripts/README; do
    dpkg-query -W -f='${Conffiles}\n' lunamq | grep -q "^ $f " || fail "$f is not a conffile"
done
# the service enabled (deb-systemd-helper does it without a running systemd)
[ -L /etc/systemd/system/multi-user.target.wants/lunamq.service ] ||
    fail "lunamq.service not enabled"

IFS=: read -r _ _ uid _ _ home shell < <(getent passwd lunamq) || fail "no lunamq user"
getent group lunamq >/dev/null || fail "no lunamq group"
[ "$home" = /var/lib/lunamq ] || fail "lunamq's home is $home"
case $shell in */nologin | */false) ;; *) fail "lunamq's shell is $shell" ;; esac
[ "$uid" -lt 1000 ] || fail "lunamq is not a system user (uid $uid)"

# mbedTLS is in the binaries, not a dependency
depends=$(dpkg-query -W -f='${Depends}' lunamq)
! grep -qi mbed <<<"$depends" || fail "depends on mbedTLS: $depends"
for b in /usr/sbin/lunamq /usr/bin/lunamq-ctl; do
    ldd "$b" >"$tmp/ldd"
    ! grep -q 'not found' "$tmp/ldd" || fail "$b: $(grep 'not found' "$tmp/ldd")"
    ! grep -qi mbed "$tmp/ldd" || fail "$b links mbedTLS dynamically"
done
say "Depends: $depends"
lap "files, owners, modes, conffiles, user, dependencies checked"

# ---- the configuration ----
untested=()
unknown_pending() { # LOG: the pending options the broker called unknown in LOG
    local o
    for o in "${pending[@]}"; do
        grep -q "unknown option '$o'" "$1" && echo "$o"
    done
    return 0
}
without() { # FILE OPTION...: FILE without the lines of these options, to stdout
    local f=$1 o
    shift
    cp "$f" "$tmp/without"
    for o in "$@"; do sed -i -E "/^[[:space:]]*$o([[:space:]]|\$)/d" "$tmp/without"; done
    cat "$tmp/without"
}
conf=/etc/lunamq/lunamq.conf
rc=0
/usr/sbin/lunamq -t -c "$conf" >"$tmp/t.log" 2>&1 || rc=$?
if grep -q "invalid option -- 't'" "$tmp/t.log"; then
    untested+=("lunamq -t")
elif [ $rc -eq 0 ]; then
    say "lunamq -t -c $conf: valid"
else
    # valid but for options of other branches?
    mapfile -t missing < <(unknown_pending "$tmp/t.log")
    without "$conf" "${missing[@]}" >"$tmp/t.conf"
    if [ ${#missing[@]} -eq 0 ] || ! /usr/sbin/lunamq -t -c "$tmp/t.conf" >/dev/null 2>&1; then
        cat "$tmp/t.log"
        fail "lunamq -t -c $conf: exit status $rc"
    fi
    untested+=("lunamq -t with ${missing[*]}")
fi

# a copy on a free port with its admin socket here (/run/lunamq is the service's), run as
# root as systemd starts it
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
sed -e "s/^listener 1883 127.0.0.1\$/listener $port 127.0.0.1/" \
    -e "s|^admin_socket .*|admin_socket $tmp/lunamq.sock|" "$conf" >"$tmp/lunamq.conf"
grep -q "^listener $port " "$tmp/lunamq.conf" || fail "no 'listener 1883 127.0.0.1' line in $conf"
left_out=()
start_broker() { # starts it; 0 once it answers on $port, 1 if it exited (its log in $tmp/run.log)
    /usr/sbin/lunamq -c "$tmp/lunamq.conf" >"$tmp/run.log" 2>&1 &
    pid=$!
    for _ in $(seq 100); do
        kill -0 "$pid" 2>/dev/null || {
            wait "$pid" || true
            pid=""
            return 1
        }
        mosquitto_pub -h 127.0.0.1 -p "$port" -q 1 -r -t pkg/test -m installed 2>/dev/null && return 0
        sleep 0.1
    done
    cat "$tmp/run.log"
    fail "the broker does not answer on 127.0.0.1:$port after 10 s"
}
for attempt in $(seq $((${#pending[@]} + 1))); do
    start_broker && break
    mapfile -t missing < <(unknown_pending "$tmp/run.log")
    [ ${#missing[@]} -gt 0 ] || {
        cat "$tmp/run.log"
        fail "the broker exited on the installed configuration"
    }
    left_out+=("${missing[@]}")
    without "$tmp/lunamq.conf" "${missing[@]}" >"$tmp/run.conf"
    mv "$tmp/run.conf" "$tmp/lunamq.conf"
    [ "$attempt" -le "${#pending[@]}" ] || fail "the broker does not start"
done
[ -n "$pid" ] || fail "the broker does not start"
[ ${#left_out[@]} -eq 0 ] || untested+=("the run with ${left_out[*]}")
/usr/bin/lunamq-ctl -s "$tmp/lunamq.sock" retained 'pkg/#' | grep -q pkg/test ||
    fail "lunamq-ctl: pkg/test not retained"
if [[ " ${left_out[*]} " == *" user "* ]]; then
    untested+=("the switch to the lunamq user")
else
    runs_as=$(ps -o user= -p "$pid")
    [ "$runs_as" = lunamq ] || fail "the broker runs as $runs_as, not lunamq"
fi
kill "$pid"
for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
! kill -0 "$pid" 2>/dev/null || fail "the broker still runs 5 s after SIGTERM"
wait "$pid" || fail "the broker's exit status after SIGTERM: $?"
pid=""
# the journal: written, and by lunamq (the broker must open it after it became lunamq)
[ -n "$(ls -A /var/lib/lunamq)" ] || fail "nothing in /var/lib/lunamq after a retained QoS 1 message"
if [[ " ${left_out[*]} " != *" user "* ]]; then
    not_lunamq=$(find /var/lib/lunamq -mindepth 1 ! -user lunamq)
    [ -z "$not_lunamq" ] || fail "in /var/lib/lunamq, not lunamq's: $not_lunamq"
fi
lap "the broker ran on a copy of the configuration (port $port)"

# ---- the unit ----
# its Documentation= man pages too, once the package has them
man=yes
if [ ! -f /usr/share/man/man8/lunamq.8.gz ] || [ ! -f /usr/share/man/man5/lunamq.conf.5.gz ]; then
    man=no
    untested+=("the unit's Documentation= man pages")
fi
systemd-analyze verify --man=$man /usr/lib/systemd/system/lunamq.service >"$tmp/verify.log" 2>&1 || {
    cat "$tmp/verify.log"
    fail "systemd-analyze verify lunamq.service"
}
[ ! -s "$tmp/verify.log" ] || {
    say "systemd-analyze verify:"
    sed 's/^/    /' "$tmp/verify.log"
}
lap "systemd-analyze verify"

# ---- purge ----
dpkg --purge lunamq >"$tmp/purge.log" 2>&1 || {
    cat "$tmp/purge.log"
    fail "dpkg --purge"
}
while read -r f; do
    [ -d "$f" ] && [ ! -L "$f" ] && continue # shared directories (/usr/bin ...) stay
    if [ -e "$f" ] || [ -L "$f" ]; then fail "$f is still there after the purge"; fi
done <"$tmp/files"
for f in /etc/lunamq /var/lib/lunamq /usr/share/doc/lunamq \
    /etc/systemd/system/multi-user.target.wants/lunamq.service; do
    if [ -e "$f" ] || [ -L "$f" ]; then fail "$f is still there after the purge"; fi
done
getent passwd lunamq >/dev/null || fail "the purge removed the lunamq user (Debian keeps it)"
lap "purged: no file left, the user kept"

for u in "${untested[@]}"; do say "NOT TESTED (not in this build yet): $u"; done
say "passed"
