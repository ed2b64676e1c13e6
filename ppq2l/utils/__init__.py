"""Helpers outside the training loop: logging and dataset preparation scripts."""
