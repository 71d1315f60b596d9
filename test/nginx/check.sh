#!/usr/bin/env bash
# Before the nginx suite: nginx must be installed (the tests start their own, on a free port, with their own
# configuration, and stop it again). Fails (never skips) with what to do.
if ! command -v nginx >/dev/null && [ ! -x /usr/sbin/nginx ]; then
  echo "nginx is not installed; on Debian: apt-get update && apt-get install -y nginx"
  exit 1
fi
