"""Datasets: built-in loaders, synthetic generators, uploaded frames and de-identification."""
