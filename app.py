"""Composition only: build the Chalice app and register the blueprints. No logic lives here."""

from __future__ import annotations

from chalice.app import Chalice

from chalicelib.api import register

# configure_logs=False: Chalice would attach a plain-text handler to the logger named after the app,
# which is also the Powertools JSON logger (service "myna-relay").
app = Chalice(app_name="myna-relay", configure_logs=False)
app.debug = False  # never true: Chalice would put tracebacks into response bodies
register(app)
