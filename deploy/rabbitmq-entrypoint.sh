#!/bin/sh
# The compose file's RabbitMQ: Debian's rabbitmq-server, logging to stdout, its user and
# password from SHOAL_RABBITMQ_USER / SHOAL_RABBITMQ_PASSWORD (made on the first start), and
# consumer_timeout above Shoal's longest job (executors ack a job when it has ended), and
# max_message_size at Shoal's largest message (shoal.limits.MAX_MESSAGE_BYTES, 64 MiB).
set -eu
mkdir -p /etc/rabbitmq/conf.d
cat >/etc/rabbitmq/conf.d/10-shoal.conf <<CONF
default_user = ${SHOAL_RABBITMQ_USER:-shoal}
default_pass = ${SHOAL_RABBITMQ_PASSWORD:-shoal}
consumer_timeout = 90000000
max_message_size = 67108864
log.console = true
log.console.level = warning
log.file = false
CONF
chown -R rabbitmq:rabbitmq /var/lib/rabbitmq
export HOME=/var/lib/rabbitmq
exec setpriv --reuid=rabbitmq --regid=rabbitmq --init-groups /usr/lib/rabbitmq/bin/rabbitmq-server
