"""Helpers that start real servers on loopback for the tests (moto S3, a fake GCP API)."""
