#!/usr/bin/env bash
# Make sure the services the test suites talk to are reachable: PostgreSQL (:5432, trust auth
# for user postgres), Redis (:6379) and RabbitMQ (:5672, guest/guest), all on 127.0.0.1.
# For each one that does not answer, in this order:
#   1. start a locally installed server binary;
#   2. else run the official image through a container engine, if one answers;
#   3. else (Debian/Ubuntu, as root) apt-get install the server and start it.
set -euo pipefail

listening() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

wait_port() {
  for _ in $(seq 1 60); do listening "$1" && return 0; sleep 1; done
  echo "ensure-services: $2 did not come up on 127.0.0.1:$1" >&2
  return 1
}

engine() {
  for cli in docker podman; do
    command -v "$cli" >/dev/null && "$cli" info >/dev/null 2>&1 && { echo "$cli"; return 0; }
  done
  return 1
}

# run_image NAME PORT IMAGE [ARGS...]: the official image, published on 127.0.0.1 only.
run_image() {
  local name=$1 port=$2 image=$3 cli; shift 3
  cli=$(engine) || return 1
  "$cli" run -d --rm --name "celery-stack-test-$name" -p "127.0.0.1:$port:$port" "$@" "$image" >/dev/null
}

apt_install() {
  [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null || return 1
  [ -n "$(find /var/lib/apt/lists -name '*Packages*' -mmin -1440 2>/dev/null | head -1)" ] \
    || apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

start_postgres() {
  if ! command -v pg_ctlcluster >/dev/null; then
    run_image postgres 5432 "${POSTGRES_IMAGE:-postgres:16}" -e POSTGRES_HOST_AUTH_METHOD=trust \
      && return
    apt_install postgresql
  fi
  version=$(find /etc/postgresql -mindepth 1 -maxdepth 1 -printf "%f\n" | sort -V | tail -1)
  conf=/etc/postgresql/$version/main
  # Tests connect as postgres over TCP without a password, like the CI machine.
  grep -q '^host all all 127.0.0.1/32 trust' "$conf/pg_hba.conf" \
    || sed -i '1i host all all 127.0.0.1/32 trust' "$conf/pg_hba.conf"
  pg_ctlcluster --skip-systemctl-redirect "$version" main start
}

start_redis() {
  if ! command -v redis-server >/dev/null; then
    run_image redis 6379 "${REDIS_IMAGE:-redis:7}" && return
    apt_install redis-server
  fi
  redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no
}

start_rabbitmq() {
  if ! command -v rabbitmq-server >/dev/null; then
    run_image rabbitmq 5672 "${RABBITMQ_IMAGE:-rabbitmq:3}" && return
    apt_install rabbitmq-server
  fi
  rabbitmq-server -detached
}

listening 5432 || { echo "ensure-services: starting PostgreSQL"; start_postgres; wait_port 5432 PostgreSQL; }
listening 6379 || { echo "ensure-services: starting Redis"; start_redis; wait_port 6379 Redis; }
listening 5672 || { echo "ensure-services: starting RabbitMQ"; start_rabbitmq; wait_port 5672 RabbitMQ; }
echo "ensure-services: PostgreSQL, Redis and RabbitMQ answer on 127.0.0.1"
