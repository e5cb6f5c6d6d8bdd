"""genact: generative zero-shot video action recognition (REST + ReGen)."""

__version__ = "0.1.0"
