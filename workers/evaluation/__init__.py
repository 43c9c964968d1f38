"""Measurements of the models the project trains (quality numbers for model cards and docs)."""
