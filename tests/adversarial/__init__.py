"""Adversarial cases: hostile or careless input, one clear line and exit 2, nothing
lost, nothing run."""
