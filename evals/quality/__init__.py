"""The labelled quality set and its runner (python -m evals.quality)."""
