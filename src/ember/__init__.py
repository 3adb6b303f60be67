"""Ember: an end-to-end deep-learning inference compiler."""

__version__ = "0.1.0"
