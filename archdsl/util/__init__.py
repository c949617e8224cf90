"""Helpers that are not the pipeline: atomic file writes, running on a deep stack."""
