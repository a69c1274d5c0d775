"""The HTTP service of ``metaagent serve``: REST API, event streams, metrics, dashboard.

Needs the ``server`` extra (FastAPI, uvicorn, prometheus-client).
"""
