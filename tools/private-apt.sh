# shellcheck shell=bash
# SPDX-License-Identifier: MIT
# tools/private-apt.sh: sourced by tools/deps.sh and tools/mosquitto-ws.sh. An apt
# configuration of our own (its sources, lists and cache under a directory of build/deps),
# so that Debian 13's packages and source packages can be fetched on Debian 12 without
# touching the system's sources and lists. The mirror is the one the machine's own apt
# sources name, read at run time: no mirror is written into the repository.

# The URI of the Debian mirror the machine uses for bookworm (deb822 sources, then
# sources.list); the security archive is not one.
debian_mirror() {
    local uri="" f
    for f in /etc/apt/sources.list.d/*.sources; do
        [ -f "$f" ] || continue
        uri=$(awk 'BEGIN{RS=""} /Suites:[^\n]*bookworm([ \n]|$)/ && !/security/ {
                     if (match($0, /URIs:[ \t]*[^ \t\n]+/)) { s=substr($0,RSTART,RLENGTH); sub(/URIs:[ \t]*/,"",s); print s; exit } }' "$f")
        [ -n "$uri" ] && break
    done
    if [ -z "$uri" ] && [ -f /etc/apt/sources.list ]; then
        uri=$(awk '$1=="deb" && $0 !~ /security/ { for (i=2;i<=NF;i++) if ($i ~ /^[a-z]+:\/\//) { print $i; exit } }' /etc/apt/sources.list)
    fi
    [ -n "$uri" ] || { printf 'cannot find a Debian mirror in /etc/apt/sources*\n' >&2; return 1; }
    printf '%s\n' "$uri"
}

# private_apt_setup DIR 'TYPE SUITE'...: DIR/sources.list with one line per argument
# ("deb trixie", "deb-src bookworm": main, signed by Debian's archive keyring), the apt
# options that use it in the array aptopts, and its lists updated.
private_apt_setup() {
    local dir=$1 uri line keyring=/usr/share/keyrings/debian-archive-keyring.gpg
    shift
    mkdir -p "$dir/lists/partial" "$dir/cache/archives/partial"
    uri=$(debian_mirror) || return 1
    for line in "$@"; do
        printf '%s [signed-by=%s] %s %s main\n' "${line% *}" "$keyring" "$uri" "${line#* }"
    done > "$dir/sources.list"
    aptopts=(-o "Dir::Etc::sourcelist=$dir/sources.list" -o "Dir::Etc::sourceparts=/dev/null"
             -o "Dir::State::Lists=$dir/lists" -o "Dir::Cache=$dir/cache"
             -o "Dir::State::status=/dev/null" -o "APT::Get::List-Cleanup=0" -o "APT::Sandbox::User=root")
    apt-get -q "${aptopts[@]}" update
}
