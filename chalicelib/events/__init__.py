"""Scheduled and queue handlers (Chalice blueprints). The result poller and the audit checkpoint
land here; like ``api/``, this package only translates events into domain calls."""
