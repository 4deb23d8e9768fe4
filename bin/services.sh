#!/usr/bin/env bash
# Make sure Redis (127.0.0.1:6379) and RabbitMQ (127.0.0.1:5672) answer, starting or installing them if
# not, and that Debian's Chromium is there for the browser test.
set -euo pipefail

answers() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
SUDO=""; if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi
apt_updated=""
need_package() {
  if [ -z "$apt_updated" ]; then $SUDO apt-get update -q >&2; apt_updated=1; fi
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q "$@" >&2
}
wait_for() {  # port, seconds, name
  for _ in $(seq 1 "$2"); do answers "$1" && return 0; sleep 1; done
  echo "error: $3 does not answer on 127.0.0.1:$1 after $2 s" >&2
  exit 1
}

if ! answers 6379; then
  command -v redis-server >/dev/null || need_package redis-server
  echo "starting Redis" >&2
  mkdir -p /var/lib/redis /var/log/redis 2>/dev/null || true
  $SUDO redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no \
    --dir /tmp --logfile /tmp/gateway-test-redis.log
  wait_for 6379 30 Redis
fi

if ! answers 5672; then
  command -v rabbitmq-server >/dev/null || [ -x /usr/sbin/rabbitmq-server ] || need_package rabbitmq-server
  echo "starting RabbitMQ" >&2
  $SUDO /usr/sbin/rabbitmq-server -detached >&2 || true
  wait_for 5672 120 RabbitMQ
  $SUDO /usr/sbin/rabbitmqctl -q await_startup >&2 || true
fi
# The web chat's browser test drives Debian's Chromium with Playwright (no browser download).
if [ ! -x /usr/bin/chromium ]; then
  echo "installing Chromium for the browser test" >&2
  need_package chromium fonts-noto-color-emoji
fi
[ -x /usr/bin/chromium ] || { echo "error: /usr/bin/chromium is missing (apt-get install chromium)" >&2; exit 1; }
# The IMAP inbox tests run a private dovecot of their own (tests/support/imap.py): install it, and stop the
# distro's service in case the package started it.
if [ ! -x /usr/sbin/dovecot ]; then
  echo "installing dovecot-imapd for the IMAP inbox tests" >&2
  need_package dovecot-imapd
  $SUDO service dovecot stop >/dev/null 2>&1 || true
  $SUDO /usr/sbin/dovecot stop >/dev/null 2>&1 || true
fi
[ -x /usr/sbin/dovecot ] || { echo "error: /usr/sbin/dovecot is missing (apt-get install dovecot-imapd)" >&2; exit 1; }

command -v rabbitmqctl >/dev/null || [ -x /usr/sbin/rabbitmqctl ] || {
  echo "error: rabbitmqctl not found (the tests create a vhost of their own with it)" >&2; exit 1; }
echo "Redis and RabbitMQ answer" >&2
