"""Counts visits in Redis; the counter lives in the redis service's volume."""

import os

import redis
from flask import Flask

app = Flask(__name__)
store = redis.Redis(host=os.environ.get("REDIS_HOST", "redis"), port=6379, socket_timeout=2)


@app.get("/")
def index():
    visits = store.incr("visits")
    return f"Hello from composer! This page has been visited {visits} times.\n"


@app.get("/health")
def health():
    store.ping()
    return "ok\n"


if __name__ == "__main__":
    app.run(host="0.0.0.0", port=5000)
