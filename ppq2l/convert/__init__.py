"""Converters from officially released checkpoints to ppq2l checkpoints."""
