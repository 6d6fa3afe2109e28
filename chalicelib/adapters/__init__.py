"""Adapters to AWS and the portal. boto3 errors never leave this package: each is translated into
a domain error right where it is caught."""
