"""A simulator of Mynaportal's self-information API (自己情報取得API), for local runs and tests.

Written from docs/mynaportal.md alone: it never imports the relay (``chalicelib``), so it catches
the relay's misreadings of the protocol instead of repeating them. Never deployed.
"""
