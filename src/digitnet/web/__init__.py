"""The drawing demo: a web page to draw digits on and watch the network read them.

Needs the ``web`` extra (FastAPI and uvicorn). Start it with ``digitnet serve MODEL``, or build
the app yourself with :func:`digitnet.web.app.create_app`.
"""
