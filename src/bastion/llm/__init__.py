"""LLM fine-tuning: base models, text datasets, LoRA jobs, generation (see docs/fine_tuning.md)."""
