"""blender: ensembling LLMs by pairwise ranking (PairRanker) and generative fusion (GenFuser).

Packages, from the bottom up: `records` (the MixInstruct record), `rankers` (the ranker kinds and their
registry), `aggregation` (N×N logits -> ranking), `fuser`, `metrics`, `training` (the one loop and the jobs),
`evaluation` (tables, reports), `api` (`Blender`), `mixinstruct` (the dataset build) and `cli` (entry points).
"""

__version__ = "0.1.0"
