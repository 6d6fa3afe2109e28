"""Operator CLI (``python -m relayctl``). Lives outside ``chalicelib/``: never shipped to Lambda."""
