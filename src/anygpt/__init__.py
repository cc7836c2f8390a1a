"""anygpt: AnyGPT (arXiv 2402.12226) re-implemented.

One decoder-only LM reads and writes text, speech, images and music as discrete tokens.
"""

__version__ = "0.1.0"
