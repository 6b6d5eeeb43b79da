"""Registered datasets, one per file (the suite's own package; unrelated to Hugging Face ``datasets``)."""
