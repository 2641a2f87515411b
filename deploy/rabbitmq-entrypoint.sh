#!/bin/sh
# The compose file's RabbitMQ: Debian's rabbitmq-server, logging to stdout, an administrator
# from SHOAL_RABBITMQ_USER / SHOAL_RABBITMQ_PASSWORD (made on the first start),
# consumer_timeout above Shoal's longest job (executors ack a job when it has ended), and
# max_message_size at Shoal's largest message (shoal.limits.MAX_MESSAGE_BYTES, 64 MiB).
# Once the broker is up, `shoal broker setup` makes one account per role with its password in
# /secrets (a volume the requester and executors read), then marks /secrets/ready.
set -eu
mkdir -p /etc/rabbitmq/conf.d /secrets
cat >/etc/rabbitmq/conf.d/10-shoal.conf <<CONF
default_user = ${SHOAL_RABBITMQ_USER:-shoal}
default_pass = ${SHOAL_RABBITMQ_PASSWORD:-shoal}
consumer_timeout = 90000000
max_message_size = 67108864
log.console = true
log.console.level = warning
log.file = false
CONF
chown -R rabbitmq:rabbitmq /var/lib/rabbitmq /secrets
chmod 0755 /secrets
export HOME=/var/lib/rabbitmq
as_rabbitmq() { setpriv --reuid=rabbitmq --regid=rabbitmq --init-groups "$@"; }
rm -f /secrets/ready
# rabbitmqctl only once the server has made its Erlang cookie (else it would make another).
as_rabbitmq sh -c 'until [ -f "$HOME/.erlang.cookie" ] && rabbitmqctl -q await_startup; do
        sleep 1
    done
    shoal broker setup --secrets /secrets && touch /secrets/ready' &
exec setpriv --reuid=rabbitmq --regid=rabbitmq --init-groups /usr/lib/rabbitmq/bin/rabbitmq-server
