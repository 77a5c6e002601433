#!/usr/bin/env bash
# Start a throwaway PostgreSQL cluster for the store's tests and export SORTITION_TEST_POSTGRES_URL.
#
# Source it (`. .ci/postgres.sh || true`) so the variable reaches the test run. It never fails the
# caller and never hangs: every step is bounded by `timeout`, and when PostgreSQL cannot be had it says
# why and returns 0 without setting the variable (the PostgreSQL tests then skip with that reason).
# The cluster lives in a temp dir owned by an unprivileged user (postgres refuses to run as root),
# listens on 127.0.0.1 at a free port with trust auth, and is stopped when the calling shell exits.

_sortition_pg_main() {
    local bindir="" d u runas="" runuser_bin="" dir port stop prev
    local -a as=()

    _sortition_pg_bindir() {
        local d
        if command -v pg_ctl >/dev/null 2>&1 && command -v initdb >/dev/null 2>&1; then
            dirname "$(readlink -f "$(command -v pg_ctl)")"; return 0
        fi
        for d in $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V -r); do
            if [ -x "$d/pg_ctl" ] && [ -x "$d/initdb" ]; then echo "$d"; return 0; fi
        done
        return 1
    }

    bindir="$(_sortition_pg_bindir)" || bindir=""
    if [ -z "$bindir" ] && command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
        echo "[postgres.sh] PostgreSQL not found; trying apt-get install -y postgresql" >&2
        DEBIAN_FRONTEND=noninteractive timeout 120 apt-get update -qq >/dev/null 2>&1 || true
        DEBIAN_FRONTEND=noninteractive timeout 300 apt-get install -y -qq --no-install-recommends \
            postgresql >/dev/null 2>&1 || true
        bindir="$(_sortition_pg_bindir)" || bindir=""
    fi
    if [ -z "$bindir" ]; then
        echo "[postgres.sh] PostgreSQL is not available: the PostgreSQL store tests will skip" >&2
        return 0
    fi

    if [ "$(id -u)" = 0 ]; then
        for u in postgres nobody; do
            if id "$u" >/dev/null 2>&1; then runas="$u"; break; fi
        done
        runuser_bin="$(command -v runuser 2>/dev/null || ls /usr/sbin/runuser /sbin/runuser 2>/dev/null | head -n 1)"
        if [ -z "$runas" ] || [ -z "$runuser_bin" ]; then
            echo "[postgres.sh] running as root without runuser or an unprivileged user: tests will skip" >&2
            return 0
        fi
        as=("$runuser_bin" -u "$runas" --)
    fi

    dir="$(mktemp -d /tmp/sortition-pg.XXXXXX)" || return 0
    chmod 755 "$dir"
    if [ -n "$runas" ]; then chown "$runas" "$dir" || return 0; fi
    port="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])' \
        2>/dev/null)" || port=54329

    if ! timeout 120 "${as[@]}" "$bindir/initdb" -D "$dir/data" -U sortition -A trust -E UTF8 --no-locale \
        >"$dir/initdb.log" 2>&1; then
        echo "[postgres.sh] initdb failed (see $dir/initdb.log): tests will skip" >&2; return 0
    fi
    # fsync off: a throwaway test cluster; nothing here must survive a crash.
    if ! timeout 60 "${as[@]}" "$bindir/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 30 \
        -o "-k $dir -p $port -h 127.0.0.1 -c fsync=off -c full_page_writes=off -c synchronous_commit=off" \
        start >"$dir/pg_ctl.log" 2>&1; then
        echo "[postgres.sh] the server did not start (see $dir/server.log): tests will skip" >&2
        timeout 30 "${as[@]}" "$bindir/pg_ctl" -D "$dir/data" -m immediate stop >/dev/null 2>&1 || true
        return 0
    fi
    export SORTITION_TEST_POSTGRES_URL="postgresql://sortition@127.0.0.1:$port/postgres"
    echo "[postgres.sh] PostgreSQL running in $dir: SORTITION_TEST_POSTGRES_URL=$SORTITION_TEST_POSTGRES_URL" >&2

    # Stop it (SIGQUIT to the postmaster: immediate shutdown) and remove it when the caller exits,
    # keeping any EXIT trap already set.
    stop="kill -QUIT \$(head -n 1 '$dir/data/postmaster.pid' 2>/dev/null) 2>/dev/null; sleep 1; rm -rf '$dir'"
    prev="$(trap -p EXIT | sed -e "s/^trap -- '//" -e "s/' EXIT\$//")"
    trap "${prev:+$prev; }$stop" EXIT
}
_sortition_pg_main || true
unset -f _sortition_pg_main _sortition_pg_bindir
