#!/bin/sh
# `make demo`: bring up the flask-redis sample and show the counter.
set -eu
cd "$(dirname "$0")"
composer=../../.venv/bin/composer
echo "== the project, as composer reads it =="
"$composer" config
echo
echo "Running the sample needs the container runtime, images and networks (issues 3-6): not yet."
