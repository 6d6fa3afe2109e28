"""HTTP adapter: Chalice blueprints that parse, call the domain and serialise. With ``app.py`` and
``chalicelib/events``, the only code that imports chalice."""

from __future__ import annotations

from chalice.app import Chalice


def register(app: Chalice) -> None:
    from chalicelib.api import (
        consent,
        delivery,
        health,
        oauth,
        openapi_route,
        partner_audit,
        receipts,
        wellknown,
    )
    from chalicelib.api.middleware import register_middleware
    from chalicelib.events import scheduled

    register_middleware(app)
    app.register_blueprint(health.bp)
    app.register_blueprint(wellknown.bp)
    app.register_blueprint(oauth.bp)
    app.register_blueprint(consent.bp)
    app.register_blueprint(delivery.bp)
    app.register_blueprint(partner_audit.bp)
    app.register_blueprint(receipts.bp)
    app.register_blueprint(openapi_route.bp)
    app.register_blueprint(scheduled.bp)
