#!/usr/bin/env bash
# Make sure RabbitMQ answers on 127.0.0.1:5672 (guest/guest): install and start it when
# absent, then raise the broker-wide consumer_timeout so long jobs keep their delivery and
# lower max_message_size to Shoal's largest message.
#
# Executors ack a job's delivery only after its terminal event, so consumer_timeout must be
# longer than the longest job: 25 h against the executor's 24 h maximum execution timeout.
# RabbitMQ 3.10 has no per-queue setting; it is set now (rabbitmqctl eval) and in
# rabbitmq.conf for the next start.
#
# A policy bounds shoal.dead on the default vhost: a new shoal.dead is declared bounded, but
# one declared by an older Shoal keeps its arguments (see shoal/topology.py).
#
# max_message_size is shoal.limits.MAX_MESSAGE_BYTES (64 MiB; a test checks they agree): the
# broker refuses anything longer, which bounds what a consumer can be handed (RabbitMQ's own
# default is 128 MiB). Set the same two ways; it applies to channels opened afterwards.
set -euo pipefail

CONSUMER_TIMEOUT_MS="${SHOAL_CONSUMER_TIMEOUT_MS:-90000000}"
MAX_MESSAGE_SIZE=67108864
CONF=/etc/rabbitmq/rabbitmq.conf

port_open() { (exec 3<>/dev/tcp/127.0.0.1/5672) 2>/dev/null; }

if ! port_open; then
    if ! command -v rabbitmq-server >/dev/null 2>&1; then
        echo "installing rabbitmq-server"
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq rabbitmq-server >/dev/null
    fi
    if ! port_open; then
        echo "starting rabbitmq-server"
        rabbitmq-server -detached
    fi
    for _ in $(seq 1 90); do
        port_open && break
        sleep 1
    done
    port_open || { echo "RabbitMQ did not start on 127.0.0.1:5672" >&2; exit 1; }
fi
if [[ -d /etc/rabbitmq ]] && ! grep -q '^consumer_timeout' "$CONF" 2>/dev/null; then
    printf '# set by Shoal: longer than its longest job\nconsumer_timeout = %s\n' \
        "$CONSUMER_TIMEOUT_MS" >>"$CONF"
fi
if [[ -d /etc/rabbitmq ]] && ! grep -q '^max_message_size' "$CONF" 2>/dev/null; then
    printf '# set by Shoal: its largest message\nmax_message_size = %s\n' \
        "$MAX_MESSAGE_SIZE" >>"$CONF"
fi
# Wait until the broker accepts commands, then lift consumer_timeout (3.10: broker-wide).
for _ in $(seq 1 60); do
    rabbitmqctl -q await_startup >/dev/null 2>&1 && break
    sleep 1
done
rabbitmqctl -q eval "application:set_env(rabbit, consumer_timeout, ${CONSUMER_TIMEOUT_MS})." \
    >/dev/null
rabbitmqctl -q set_policy --apply-to queues shoal-dead '^shoal\.dead$' \
    '{"max-length":10000,"max-length-bytes":268435456,"overflow":"drop-head"}' >/dev/null
rabbitmqctl -q eval "application:set_env(rabbit, max_message_size, ${MAX_MESSAGE_SIZE})." \
    >/dev/null
echo "rabbitmq: ready on 127.0.0.1:5672 (consumer_timeout ${CONSUMER_TIMEOUT_MS} ms," \
    "max_message_size ${MAX_MESSAGE_SIZE} bytes)"
