"""Composition only: build the Chalice app and register the blueprints. No logic lives here."""

from __future__ import annotations

import gc

# Lambda's Init is this import. What it builds (modules, classes, routes, the logger) lives as long
# as the container, and it makes almost no garbage, so the collector's runs during it are wasted:
# about 12 ms of CPU at import, and 20 more in the first request's full collections, which walk all
# of it again (bench: cold start). It is paused while the app is built, then what exists is frozen
# out of later collections (a few hundred unreachable objects of the imports stay with it: a fixed,
# one-time amount) and collection resumes for everything requests make.
gc.disable()
try:
    from chalice.app import Chalice

    from chalicelib.api import register

    # The logger named after the app is also the Powertools JSON logger (service "myna-relay"), so
    # Chalice must not touch it: configure_logs=False keeps its plain-text handler off, and debug
    # is passed to the constructor because the ``app.debug`` setter would force that logger to
    # ERROR. debug is never true: Chalice would put tracebacks into response bodies.
    app = Chalice(app_name="myna-relay", debug=False, configure_logs=False)
    register(app)
finally:
    gc.freeze()
    gc.enable()
