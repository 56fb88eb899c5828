"""What users own in the vault, as records: uploaded datasets and the model registry."""
