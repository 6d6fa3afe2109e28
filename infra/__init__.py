"""Infrastructure specifications: the single source of truth for tables and keys.

Used by the local bootstrap (moto) now and by the deployment template later. Never shipped to
Lambda: nothing under ``chalicelib/`` may import this package.
"""
