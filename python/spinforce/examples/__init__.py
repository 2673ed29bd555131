"""Small runnable examples: ``python -m spinforce.examples.<name>``."""
