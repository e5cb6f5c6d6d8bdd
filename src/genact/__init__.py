"""genact: generative zero-shot video action recognition (REST + ReGen)."""

__version__ = "0.1.0"


def __getattr__(name: str):
    """`from genact import VideoClassifier` without importing torch for `genact --help`."""
    if name == "VideoClassifier":
        from genact.classifier import VideoClassifier

        return VideoClassifier
    raise AttributeError(f"module 'genact' has no attribute {name!r}")
