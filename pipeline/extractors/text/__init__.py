"""Text extractors: ``bert`` (a transformers encoder) and ``word2vec`` (gensim, corpus-fitted)."""
from . import bert, word2vec  # noqa: F401  (registers them)
