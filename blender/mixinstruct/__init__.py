"""The MixInstruct build (`make data`, PAPER.md §5), as resumable stages: the raw sources (`sources`), their mix
and split (`mix`, with `templates` for each LLM's prompt), candidate generation by 11 LLMs (`candidate_models`,
`backends`, `generate`), merging, scoring and judging (`annotate`), stage bookkeeping (`build`) and the runner of
every stage (`pipeline`). It writes records in `blender.records`' schema; nothing else in blender imports it."""
