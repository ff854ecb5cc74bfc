"""blender: ensembling LLMs by pairwise ranking (PairRanker) and generative fusion (GenFuser)."""

__version__ = "0.1.0"
