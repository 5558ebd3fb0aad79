# Sourced by scripts/test (and benchmarks/postgres_queue.py's runner): start a throwaway
# PostgreSQL cluster for the tests and export its URL as AIRQ_NB_TEST_PG.
#
# The server comes from Debian's `postgresql` package, installed when missing and we are
# root. PostgreSQL refuses to run as root, so initdb and pg_ctl run as the `postgres`
# system user, in a fresh temporary folder, listening only on a Unix socket in that folder
# (no TCP port). An EXIT trap stops the server and removes the folder.
#
# Without a server (not root, no apt-get) AIRQ_NB_TEST_PG stays unset and the PostgreSQL
# tests skip — except under CI=true, where tests/conftest.py makes them fail instead.

_pg_bindir() {
    local found
    if command -v pg_ctl >/dev/null 2>&1 && command -v initdb >/dev/null 2>&1; then
        dirname "$(readlink -f "$(command -v pg_ctl)")"
        return
    fi
    found=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
    [ -n "$found" ] && [ -x "$found/pg_ctl" ] && echo "$found"
}

_pg_as_server_user() {
    if [ "$(id -u)" = 0 ]; then
        runuser -u postgres -- "$@"
    else
        "$@"
    fi
}

_pg_stop() {
    if [ -n "${_PG_DIR:-}" ] && [ -d "$_PG_DIR" ]; then
        _pg_as_server_user "$_PG_BIN/pg_ctl" -D "$_PG_DIR/data" -m immediate -w stop \
            >/dev/null 2>&1 || true
        rm -rf "$_PG_DIR"
    fi
}

start_test_postgres() {
    if [ -n "${AIRQ_NB_TEST_PG:-}" ]; then
        return  # the caller brought its own server
    fi
    _PG_BIN=$(_pg_bindir || true)
    if [ -z "$_PG_BIN" ] && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        echo "installing Debian's postgresql for the PostgreSQL backend tests" >&2
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
        _PG_BIN=$(_pg_bindir || true)
    fi
    if [ -z "$_PG_BIN" ]; then
        echo "no PostgreSQL server (pg_ctl/initdb) found: the PostgreSQL tests will skip" >&2
        return
    fi
    if [ "$(id -u)" = 0 ] && ! id postgres >/dev/null 2>&1; then
        echo "no 'postgres' system user to run the server as: the PostgreSQL tests will skip" >&2
        return
    fi
    _PG_DIR=$(mktemp -d /tmp/airq_nb-pg.XXXXXX)
    chmod 755 "$_PG_DIR"
    [ "$(id -u)" = 0 ] && chown postgres "$_PG_DIR"
    trap _pg_stop EXIT
    _pg_as_server_user "$_PG_BIN/initdb" -D "$_PG_DIR/data" -U postgres -A trust \
        --no-sync -E UTF8 --locale=C >"$_PG_DIR/initdb.log" 2>&1 \
        || { cat "$_PG_DIR/initdb.log" >&2; return 1; }
    # fsync off: a throwaway cluster for tests, never a durability claim.
    _pg_as_server_user "$_PG_BIN/pg_ctl" -D "$_PG_DIR/data" -l "$_PG_DIR/server.log" -w \
        -o "-c listen_addresses='' -c unix_socket_directories=$_PG_DIR -c fsync=off -c max_connections=200" \
        start >/dev/null || { cat "$_PG_DIR/server.log" >&2; return 1; }
    _pg_as_server_user "$_PG_BIN/createdb" -h "$_PG_DIR" -U postgres airq_test
    export AIRQ_NB_TEST_PG="postgresql://postgres@/airq_test?host=$_PG_DIR"
    # For the test that restarts the server under a running consumer.
    export AIRQ_NB_TEST_PG_BIN="$_PG_BIN" AIRQ_NB_TEST_PG_DATA="$_PG_DIR/data"
}
