#!/usr/bin/env bash
# Installs and starts everything the tests need, from nothing; safe to run again.
# Debian packages, PostgreSQL, MariaDB, Firebird, and the Python environment in .venv
# pinned by constraints.txt.
set -euo pipefail
cd "$(dirname "$0")/.."

DEBS=(default-libmysqlclient-dev pkg-config build-essential libfbclient2 firebird3.0-server
      postgresql mariadb-server mariadb-client)
missing=()
for deb in "${DEBS[@]}"; do
  dpkg-query -W -f='${Status}' "$deb" 2>/dev/null | grep -q "install ok installed" || missing+=("$deb")
done
if ((${#missing[@]})); then
  echo "bootstrap: installing Debian packages: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq "${missing[@]}" >/dev/null
fi

if ! pg_isready -q -h 127.0.0.1 -p 5432; then
  echo "bootstrap: starting PostgreSQL"
  pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | sort -V | tail -1)" main start
  for _ in $(seq 30); do pg_isready -q -h 127.0.0.1 -p 5432 && break; sleep 1; done
fi
# Trust auth on loopback for the tests' postgres user (a fresh cluster asks for a password).
if ! psql -h 127.0.0.1 -U postgres -d postgres -Atc 'select 1' >/dev/null 2>&1; then
  hba=$(ls /etc/postgresql/*/main/pg_hba.conf | tail -1)
  sed -i '1i host all all 127.0.0.1/32 trust' "$hba"
  pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | sort -V | tail -1)" main reload
  sleep 1
fi

if ! mysqladmin -h 127.0.0.1 -uroot ping >/dev/null 2>&1; then
  echo "bootstrap: starting MariaDB"
  mkdir -p /run/mysqld && chown mysql:mysql /run/mysqld 2>/dev/null || true
  start-stop-daemon --start --oknodo --background --exec /usr/sbin/mariadbd -- --user=mysql
  for _ in $(seq 30); do mysqladmin -h 127.0.0.1 -uroot ping >/dev/null 2>&1 && break; sleep 1; done
fi

# Firebird: Debian's server sets a random SYSDBA password on install and writes it to
# /etc/firebird/3.0/SYSDBA.password, where the tests read it (PDR_TEST_FIREBIRD_URL overrides).
firebird_up() { (exec 3<>/dev/tcp/127.0.0.1/3050) 2>/dev/null; }
if ! firebird_up; then
  echo "bootstrap: starting Firebird"
  /etc/init.d/firebird3.0 start >/dev/null || true
  for _ in $(seq 30); do firebird_up && break; sleep 1; done
  firebird_up || { echo "bootstrap: Firebird did not start on 127.0.0.1:3050" >&2; exit 1; }
fi
if [ -z "${PDR_TEST_FIREBIRD_URL:-}" ] && ! grep -q '^ISC_PASSWORD=' /etc/firebird/3.0/SYSDBA.password 2>/dev/null; then
  echo "bootstrap: no SYSDBA password in /etc/firebird/3.0/SYSDBA.password; run dpkg-reconfigure firebird3.0-server" >&2
  exit 1
fi

if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
fi
if [ ! -x .venv/bin/uv ]; then
  .venv/bin/pip install -q "uv==0.9.*"
fi
# Installs only what differs from constraints.txt, so a second run takes a second.
.venv/bin/uv pip install -q --python .venv/bin/python -c constraints.txt -e ".[test]"
.venv/bin/uv pip check --python .venv/bin/python >/dev/null
