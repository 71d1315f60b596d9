#!/usr/bin/env bash
# Before the Redis suites: the shared Redis must answer, and redis-server must be there for the fault tests, which
# start their own. Fails (never skips) with what to do.
if ! command -v redis-server >/dev/null; then
  echo "redis-server is not installed; on Debian: apt-get update && apt-get install -y redis-server"
  exit 1
fi
if ! redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1; then
  echo "No Redis answers at 127.0.0.1:6379; start one with: redis-server --daemonize yes --save '' --appendonly no"
  exit 1
fi
version=$(redis-server --version | sed -nE 's/.*v=([0-9]+)\..*/\1/p')
if [ "${version:-0}" -lt 7 ]; then
  echo "The Redis store needs Redis 7.0 or later (found $(redis-server --version))"
  exit 1
fi
