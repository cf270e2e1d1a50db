"""The Streamlit dashboard of bench_service (``bench dashboard``).

It ships inside the package (a wheel install has it); ``bench_service.dashboard_launcher``
finds ``app.py`` next to this file. Importing this package imports nothing heavy.

``app.py`` is the Streamlit entry point and ``views/`` holds one script per page; the modules
beside them do one job each and import no Streamlit where they do not need it, so that they
can be unit-tested without a running app:

* ``data``: the database URL, the store and the cached queries (the only place that reads).
* ``state``: selections shared across pages and kept in the URL's query parameters.
* ``analysis``: rankings, confidence intervals, profiles and tuning tables (pandas only).
* ``charts``: Plotly figures; ``palette``: one colour per optimizer/scheduler/regularizer.
* ``smoothing``: TensorBoard's bias-corrected EMA; ``labels``: names and units.
* ``auth``: the access token of a dashboard bound beyond loopback.
* ``screenshots``: drives headless Chromium against a running dashboard (tests, docs).
"""
