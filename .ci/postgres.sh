# Sourced by .ci/run: installs Postgres from Debian's packages if missing, starts a cluster,
# and exports CHECKPOINT_TEST_POSTGRES_URL for the checkpoint receiver's tests. Idempotent and
# quick when Postgres is already installed and running. Needs root (as CI runs); elsewhere it
# prints a note and leaves the variable unset, so those tests run on SQLite only.
checkpoint_postgres() {
    if [ "$(id -u)" != 0 ]; then
        echo "note: not root; checkpoint's Postgres tests are skipped (see checkpoint/README.md)"
        return 0
    fi
    if ! ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1; then
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -qq
        apt-get install -y -qq postgresql >/dev/null
    fi
    local version
    version=$(ls /usr/lib/postgresql | sort -V | tail -1)
    if [ -z "$(pg_lsclusters -h | awk -v v="$version" '$1 == v && $2 == "main"')" ]; then
        pg_createcluster "$version" main >/dev/null
    fi
    # Already running is fine.
    pg_ctlcluster "$version" main start 2>/dev/null || true
    local port
    port=$(pg_lsclusters -h | awk -v v="$version" '$1 == v && $2 == "main" {print $3}')
    for _ in $(seq 1 30); do
        pg_isready -q -h 127.0.0.1 -p "$port" && break
        sleep 1
    done
    # A local, throwaway password for the test user; nothing else listens for it.
    su postgres -c "psql -q -p $port -c \"ALTER USER postgres PASSWORD 'postgres'\"" </dev/null
    export CHECKPOINT_TEST_POSTGRES_URL="postgres://postgres:postgres@127.0.0.1:$port/postgres"
    echo "checkpoint's Postgres tests run against Postgres $version on 127.0.0.1:$port"
}
checkpoint_postgres
