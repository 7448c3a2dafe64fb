"""llmprof: where the time and memory go when a Hugging Face model loads and generates.

Importing this package must stay cheap: nothing here imports torch or transformers.
"""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["__version__"]
