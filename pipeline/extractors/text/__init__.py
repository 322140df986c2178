"""Text extractors: ``bert`` (a transformers encoder), ``word2vec`` (gensim) and ``tfidf`` (sparse), both corpus-fitted
(registered when looked up: pipeline/registry.py)."""
