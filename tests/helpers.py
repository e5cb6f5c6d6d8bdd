"""What the tests share besides genact.testing: the fixture files and the captions
the `fitted` model learns."""

from pathlib import Path

FIXTURES = Path(__file__).parent / "fixtures"
CAPTIONS = ["swimming", "playing guitar"]
