"""Start Flower with /metrics behind the same basic auth as its other pages.

Flower 2.2 serves /metrics without @authenticated, so `FLOWER_BASIC_AUTH` protected every page
but that one (it lists workers and task names). This wraps the handler before Flower builds its
routes; /healthcheck stays open for the container health check.
Run as: python flower_auth.py --broker=... flower   (the arguments of `celery`)
"""

import sys

import tornado.web
from flower.views import monitor

monitor.Metrics.get = tornado.web.authenticated(monitor.Metrics.get)

if __name__ == "__main__":
    from celery.__main__ import main

    sys.exit(main())
