"""One module per model type; each declares ``Params``, ``TASKS``, ``estimate_seconds`` and ``fit``."""
