"""Machine-readable status over HTTP: Prometheus ``/metrics``, ``/status`` JSON, ``/ready``, and a
read-only status page at ``/``. Pure renderers live in ``views.py``, ``metrics.py`` and ``page.py``;
``server.py`` is the aiohttp adapter (a daemon Component)."""
