#!/bin/sh
# Minimal re-implementation of the official rabbitmq image entrypoint: RABBITMQ_DEFAULT_USER /
# RABBITMQ_DEFAULT_PASS (written to rabbitmq.conf), listeners on all interfaces, runs as rabbitmq.
set -e
if [ "$1" = rabbitmq-server ]; then
    {
        echo "loopback_users.guest = false"
        echo "listeners.tcp.default = 5672"
        echo "management.tcp.port = 15672"
        [ -z "${RABBITMQ_DEFAULT_USER:-}" ] || echo "default_user = $RABBITMQ_DEFAULT_USER"
        [ -z "${RABBITMQ_DEFAULT_PASS:-}" ] || echo "default_pass = $RABBITMQ_DEFAULT_PASS"
    } > /etc/rabbitmq/rabbitmq.conf
    chown -R rabbitmq:rabbitmq /var/lib/rabbitmq /etc/rabbitmq
    chmod 600 /etc/rabbitmq/rabbitmq.conf
    shift
    exec setpriv --reuid=rabbitmq --regid=rabbitmq --init-groups /usr/lib/rabbitmq/bin/rabbitmq-server "$@"
fi
exec "$@"
