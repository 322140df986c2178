"""Text extractors: ``bert`` (a transformers encoder), ``word2vec`` (gensim) and ``tfidf`` (sparse), both corpus-fitted."""
from . import bert, tfidf, word2vec  # noqa: F401  (registers them)
