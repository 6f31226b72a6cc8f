"""Evaluation: domain feature extractors (small classifiers for the 28x28 datasets) and metrics."""
