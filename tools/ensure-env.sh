#!/bin/sh
# Make sure the Compose env file exists and holds every secret, so a fresh clone needs no editing.
#   - ENV_FILE (default: .env at the repository root) missing: copy .env.example.
#   - each secret below that is empty or absent: set it to a fresh random value.
# Existing values are never changed. Secrets are hex, so they are safe inside URLs.
# Usage: tools/ensure-env.sh            (make up runs it)
set -eu
root=$(cd "$(dirname "$0")/.." && pwd)
env_file=${ENV_FILE:-$root/.env}
secrets="DJANGO_SECRET_KEY POSTGRES_PASSWORD REDIS_PASSWORD RABBITMQ_PASSWORD FLOWER_PASSWORD GRAFANA_ADMIN_PASSWORD"

random_hex() {  # $1 bytes of randomness -> 2*$1 hex characters
    od -An -N "$1" -tx1 /dev/urandom | tr -d ' \n'
}

if [ ! -f "$env_file" ]; then
    (umask 077 && cp "$root/.env.example" "$env_file")
    echo "created $env_file from .env.example"
fi
for name in $secrets; do
    if grep -Eq "^${name}=.+" "$env_file"; then
        continue
    fi
    case "$name" in DJANGO_SECRET_KEY) value=$(random_hex 32) ;; *) value=$(random_hex 24) ;; esac
    tmp=$(mktemp "$env_file.XXXXXX")
    if grep -Eq "^${name}=" "$env_file"; then
        sed "s/^${name}=.*/${name}=${value}/" "$env_file" > "$tmp"
    else
        cat "$env_file" > "$tmp"
        printf '%s=%s\n' "$name" "$value" >> "$tmp"
    fi
    chmod 600 "$tmp"
    mv "$tmp" "$env_file"
    echo "generated $name in $env_file"
done
