"""HTTP for the sandbox: the browser-facing ``app`` side and the server-to-server ``sp`` side.

Thin: each view parses the request, calls ``Portal`` and renders its outcome. The ``/sandbox/*``
routes (overview, history, scenario and clock control, notice delivery) exist only here, for
people and tests; the real portal has nothing like them.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from flask import Blueprint, Flask, Response, current_app, redirect, render_template, request

from sandbox.clock import ManualClock
from sandbox.personas import CALLBACK_STYLES
from sandbox.portal import (
    ApiAnswer,
    BrowserOutcome,
    ConsentPage,
    ErrorPage,
    LockedPage,
    Portal,
    Redirect,
    SignInPage,
)
from sandbox.scenarios import Scenario
from sandbox.tls import client_common_name

HERE = Path(__file__).resolve().parent
MAX_BODY_BYTES = 64 * 1024
PAGE_CSP = "default-src 'none'; style-src 'self'; img-src 'self'; base-uri 'none'; frame-ancestors 'none'"

app_side = Blueprint("app_side", __name__)
sp_side = Blueprint("sp_side", __name__)


def portal() -> Portal:
    value: Portal = current_app.extensions["portal"]
    return value


def _flask(portal_: Portal, blueprint: Blueprint) -> Flask:
    app = Flask(
        __name__,
        template_folder=str(HERE / "templates"),
        static_folder=str(HERE / "static"),
        static_url_path="/sandbox/static",
    )
    app.config["MAX_CONTENT_LENGTH"] = MAX_BODY_BYTES
    app.extensions["portal"] = portal_
    app.register_blueprint(blueprint)

    @app.after_request
    def headers(response: Response) -> Response:
        response.headers.setdefault("Cache-Control", "no-store")
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault("X-Frame-Options", "DENY")
        response.headers.setdefault("Referrer-Policy", "no-referrer")
        response.headers.setdefault("Content-Security-Policy", PAGE_CSP)
        return response

    return app


def create_app_side(portal_: Portal) -> Flask:
    return _flask(portal_, app_side)


def create_sp_side(portal_: Portal, *, tls: bool) -> Flask:
    app = _flask(portal_, sp_side)
    app.config["SANDBOX_TLS"] = tls
    return app


# -- app side: the resident's browser ---------------------------------------------------------------


def render(outcome: BrowserOutcome, *, after_post: bool, selected: str | None = None) -> Any:
    if isinstance(outcome, Redirect):
        return redirect(outcome.url, code=303 if after_post else 302)
    if isinstance(outcome, ErrorPage):
        return render_template("error.html", message=outcome.message), outcome.status
    if isinstance(outcome, SignInPage):
        status = 200 if outcome.error is None else 401
        return render_template(
            "signin.html",
            session_id=outcome.session_id,
            service=outcome.service,
            personas=outcome.personas,
            error=outcome.error,
            selected=selected,
        ), status
    if isinstance(outcome, LockedPage):
        return render_template("locked.html", session_id=outcome.session_id, persona=outcome.persona), 403
    if isinstance(outcome, ConsentPage):
        return render_template(
            "consent.html", session_id=outcome.session_id, service=outcome.service, persona=outcome.persona
        )
    raise TypeError(outcome)


@app_side.get("/online-authorization-web/oauth/authorize")
def authorize() -> Any:
    """IF001-01."""
    return render(portal().authorize(request.args.to_dict(flat=False)), after_post=False)


@app_side.post("/online-authorization-web/login")
def login() -> Any:
    form = request.form
    session_id = form.get("session", "")
    if form.get("action") == "cancel":
        return render(portal().cancel(session_id), after_post=True)
    persona = form.get("persona", "")
    return render(
        portal().sign_in(session_id, persona, form.get("pin", "")), after_post=True, selected=persona
    )


@app_side.post("/online-authorization-web/locked")
def locked() -> Any:
    return render(portal().leave_locked(request.form.get("session", "")), after_post=True)


@app_side.post("/online-authorization-web/consent")
def consent() -> Any:
    form = request.form
    return render(
        portal().consent(form.get("session", ""), agree=form.get("action") == "agree"), after_post=True
    )


@app_side.get("/sandbox/")
def index() -> Any:
    p = portal()
    return render_template(
        "index.html", services=list(p.services.values()), personas=list(p.personas.values())
    )


@app_side.get("/sandbox/history")
def history() -> Any:
    return render_template("history.html", records=portal().history())


@app_side.get("/sandbox/history.json")
def history_json() -> Any:
    return _json(200, {"records": [record.as_json() for record in portal().history()]})


@app_side.post("/sandbox/scenario")
def set_scenario() -> Any:
    """``{scenario?, callback_style?, persona?, times?}``: at least one of scenario and callback_style."""
    body = request.get_json(silent=True)
    if not isinstance(body, dict) or ("scenario" not in body and "callback_style" not in body):
        return _json(400, {"error": "JSON object expected: {scenario?, callback_style?, persona?, times?}"})
    scenario = None
    if "scenario" in body:
        try:
            scenario = Scenario(str(body.get("scenario")))
        except ValueError:
            return _json(400, {"error": f"unknown scenario; known: {[s.value for s in Scenario]}"})
    style = body.get("callback_style")
    if style is not None and style not in CALLBACK_STYLES:
        return _json(400, {"error": f"callback_style must be one of {list(CALLBACK_STYLES)}"})
    times = body.get("times")
    if times is not None and (not isinstance(times, int) or times < 1):
        return _json(400, {"error": "times must be a positive integer"})
    persona = body.get("persona")
    if persona is not None and persona not in portal().personas:
        return _json(400, {"error": "unknown persona"})
    if scenario is not None:
        portal().set_scenario(scenario, persona=persona, times=times)
    if style is not None:
        portal().set_callback_style(style, persona=persona)
    return _json(
        200,
        {
            "scenario": scenario.value if scenario else None,
            "callback_style": style,
            "persona": persona,
            "times": times,
        },
    )


@app_side.post("/sandbox/reset")
def reset() -> Any:
    portal().reset()
    return _json(200, {"reset": True})


@app_side.get("/sandbox/notices")
def notices() -> Any:
    return _json(200, {"notices": [_notice_json(n) for n in portal().notices()]})


@app_side.post("/sandbox/notices/deliver")
def deliver_notices() -> Any:
    return _json(200, {"attempted": [_notice_json(n) for n in portal().deliver_due_notices()]})


@app_side.post("/sandbox/clock/advance")
def advance_clock() -> Any:
    clock = portal().clock
    body = request.get_json(silent=True)
    seconds = body.get("seconds") if isinstance(body, dict) else None
    if not isinstance(clock, ManualClock):
        return _json(409, {"error": "the clock is the system clock; start the sandbox in deterministic mode"})
    if not isinstance(seconds, int | float) or not 0 <= seconds <= 86_400:
        return _json(400, {"error": "seconds must be a number between 0 and 86400"})
    clock.advance(float(seconds))
    return _json(200, {"now": clock.now().isoformat()})


def _notice_json(notice: Any) -> dict[str, Any]:
    return {
        "process_id": notice.process_id,
        "url": notice.url,
        "due_at": notice.due_at.isoformat(),
        "attempts": notice.attempts,
        "delivered": notice.delivered,
        "abandoned": notice.abandoned,
        "last_error": notice.last_error,
    }


# -- sp side: server to server (mutual TLS when enabled) ------------------------------------------------


def _json(status: int, body: dict[str, Any]) -> Response:
    return Response(json.dumps(body, ensure_ascii=False), status=status, mimetype="application/json")


def _answer(answer: ApiAnswer) -> Response:
    if answer.fault == "timeout":
        time.sleep(portal().timing.hang_s)
        return _json(504, {"error": "gateway timeout (simulated)"})
    if answer.fault == "5xx":
        return _json(503, {"error": "service unavailable (simulated)"})
    return _json(answer.status, answer.body)


@sp_side.post("/online-authorization-web/oauth/token")
def token() -> Response:
    """IF001-03: form fields exactly grant_type, code, redirect_uri, client_id."""
    if request.mimetype != "application/x-www-form-urlencoded":
        return _json(400, {"error": "invalid_request", "error_description": "form encoding expected"})
    tls = bool(current_app.config["SANDBOX_TLS"])
    provider = None
    if tls:
        pem = request.environ.get("SSL_CLIENT_CERT")
        common_name = client_common_name(pem) if pem else None
        provider = common_name.removeprefix("SP") if common_name else None
    return _answer(portal().token(request.form.to_dict(flat=False), client_provider=provider, tls=tls))


@sp_side.post("/online-resource-web/request")
def start_request() -> Response:
    """IF001-04."""
    return _answer(portal().request(request.headers.get("Authorization"), request.get_data()))


@sp_side.post("/online-resource-web/result")
def result() -> Response:
    """IF001-06."""
    return _answer(portal().result(request.headers.get("Authorization"), request.get_data()))
