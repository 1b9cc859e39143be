"""Synthetic month of an AI company, written in the vendors' real formats."""
