"""Composition only: build the Chalice app and register the blueprints. No logic lives here."""

from __future__ import annotations

from chalice.app import Chalice

from chalicelib.api import register

# The logger named after the app is also the Powertools JSON logger (service "myna-relay"), so
# Chalice must not touch it: configure_logs=False keeps its plain-text handler off, and debug is
# passed to the constructor because the ``app.debug`` setter would force that logger to ERROR.
# debug is never true: Chalice would put tracebacks into response bodies.
app = Chalice(app_name="myna-relay", debug=False, configure_logs=False)
register(app)
