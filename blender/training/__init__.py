"""Training: the one Accelerate loop every model trains through (`loop.fit`: resume, best checkpoint,
tracking), the ranker training any registered kind goes through (`rankers`), and the jobs behind `make
train-ranker` and `make train-fuser` (`jobs`: train, then evaluate, from typed settings)."""
