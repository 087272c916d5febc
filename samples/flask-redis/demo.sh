#!/bin/sh
# `make demo`: build and start the flask-redis sample, show the counter, say how to stop.
set -eu
cd "$(dirname "$0")"
composer=../../.venv/bin/composer
port=${WEB_PORT:-5000}
export WEB_PORT="$port"

"$composer" up -d --wait
echo
for i in 1 2; do
    ../../.venv/bin/python -c "import sys, urllib.request; sys.stdout.write(urllib.request.urlopen('http://127.0.0.1:$port/').read().decode())"
done
echo
echo "The sample is running at http://127.0.0.1:$port/"
echo "Stop it:  cd samples/flask-redis && ../../.venv/bin/composer down      (add -v to reset the counter)"
