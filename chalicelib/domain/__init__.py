"""Pure domain: models, flow rules and policies. Imports neither chalice nor boto3, nor any
other layer of ``chalicelib`` (a test enforces these walls)."""
