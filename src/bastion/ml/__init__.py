"""Model types, training, safe serialization and quantization.

Heavy libraries (torch, scikit-learn, pandas, skops) are imported inside functions so that the
server can import this package at start-up cheaply.
"""
