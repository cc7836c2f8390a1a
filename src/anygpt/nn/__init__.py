"""Building blocks of our compact models (quantizers, codecs, query transformers, ...)."""
