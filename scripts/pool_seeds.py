"""How a training recipe does over several seeds, not one draw: pool the saved val logits of its runs.

Each run's `eval/pair_logits_<data>_<split>.npz` (written by `make train-ranker` / `make eval`) gives its
pick per instruction under an aggregation. Per instruction, the recipe's value is the mean oracle score of
the runs' picks (the expected pick of a run drawn at random among these seeds); its difference with Longest
and the best single model gets the same paired bootstrap over instructions as the ranking report. One run
can land either side of Longest by luck of its seed (docs/results/pairranker.md); this says where the recipe
sits.

With --model-prior, each run's scores are first mixed with the model prior (each model's mean oracle score on
train, weight cross-fitted on the split, as the report's "+ model prior" row): the recipe with the prior.

With --mix-with FILE, each run's scores are mixed the same way with another scorer's saved scores of the same
records instead of the prior (e.g. the frozen probe's, `scripts/probe_frozen_embeddings.py --save-val-scores`):
a text-only stack of two rankers. The --against runs are pooled unmixed, so `pool_seeds.py A... --mix-with F
--against A...` is the stack's gain over the same runs, paired.

With --against, another recipe's runs are pooled the same way and the difference of the two recipes is
bootstrapped over the same instructions (paired): is one recipe better than the other, not each than Longest.

python scripts/pool_seeds.py outputs/train_ranker/<run_a> outputs/train_ranker/<run_b> ... \
    [--data ../shared/data/alpaca_blend_modern] [--split val] [--oracle gpt4_pref] [--aggregation max_logits] \
    [--model-prior [--train-split train] [--folds 2]] [--mix-with FILE.npz] [--against outputs/train_ranker/<run_c> ...]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from blender.evaluation.compare import experiment_methods
from blender.evaluation.model_prior import ModelPrior, cross_fitted_mix, cross_fitted_scores, fit_priors
from blender.evaluation.ranking import bootstrap_indices, interval, longest_scores, oracle_scores
from blender.metrics.gpt_rank import competition_ranks
from blender.rankers.saved_scores import load_candidate_scores
from blender.records.loading import find_split_file, read_jsonl

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "alpaca_blend_modern"


def run_picks(
    run_dir: Path,
    stem: str,
    records: list,
    aggregation: str,
    prior: ModelPrior | None = None,
    folds: int = 2,
    mix_with: list[np.ndarray] | None = None,
    oracle: str = "gpt4_pref",
) -> tuple[np.ndarray, str]:
    """The run's pick per instruction (ids checked against the records) and the best model it chose on train;
    with `prior`, the pick of its scores mixed with the prior, with `mix_with` (scores per record) mixed with
    those (the weight cross-fitted over `folds` on `oracle` either way).

    Reads the scores the run's evaluation saved, the way `make eval`'s comparison does (experiment_methods).
    """
    eval_dir = run_dir / "eval"
    if not (eval_dir / f"ranking_{stem}.json").is_file():
        raise FileNotFoundError(
            f"{eval_dir}: no ranking_{stem}.json (run `make eval CKPT={run_dir}/best` first)"
        )
    methods, best_model = experiment_methods(
        eval_dir, stem, run_dir.name, records, aggregations=(aggregation,)
    )
    scores = methods[0].scores
    if prior is not None:
        scores, weights = cross_fitted_scores(prior, scores, records, prior.oracle, folds)
        print(f"{run_dir.name}: model prior weights {weights} over {folds} folds")
    if mix_with is not None:
        scores, weights = cross_fitted_mix(scores, mix_with, records, oracle, folds)
        print(f"{run_dir.name}: --mix-with weights {weights} over {folds} folds")
    return np.array([int(np.argmax(s)) for s in scores]), best_model


def saved_scores_of(path: Path, records: list) -> list[np.ndarray]:
    """The scores saved in `path` (`write_candidate_scores`), checked to be of `records`' candidates, in order."""
    ids, models, scores = load_candidate_scores(path)
    if ids != [r.id for r in records] or models != [r.models for r in records]:
        raise ValueError(f"{path}: its scores are not of these records' candidates (ids or models differ)")
    return [np.asarray(s, dtype=float).reshape(len(m), -1)[:, 0] for s, m in zip(scores, models, strict=True)]


def gpt_rank(picks: np.ndarray, oracle: list[np.ndarray]) -> float:
    """Mean oracle rank of the picks (1 = best, ties share the better rank), as the report's GPT-Rank."""
    return float(np.mean([competition_ranks(o)[p] for o, p in zip(oracle, picks, strict=True)]))


def picked_scores(picks: list[np.ndarray], oracle: list[np.ndarray]) -> np.ndarray:
    """[runs, examples]: the oracle score of each run's pick on each example."""
    return np.array([[oracle[e][p] for e, p in enumerate(row)] for row in picks])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", type=Path, help="run folders (outputs/train_ranker/<run_id>)")
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--split", default="val")
    parser.add_argument("--oracle", default="gpt4_pref")
    parser.add_argument("--aggregation", default="max_logits")
    parser.add_argument("--n-boot", type=int, default=1000)
    parser.add_argument("--model-prior", action="store_true", help="pool the picks with the model prior")
    parser.add_argument("--train-split", default="train", help="where the model prior is fitted")
    parser.add_argument("--folds", type=int, default=2, help="the prior weight's cross-fitting folds")
    parser.add_argument(
        "--mix-with",
        type=Path,
        default=None,
        help="saved candidate scores (.npz) to mix each run's with (not --against's)",
    )
    parser.add_argument("--against", nargs="+", type=Path, default=[], help="another recipe's run folders")
    args = parser.parse_args()
    if args.model_prior and args.mix_with:
        parser.error("--model-prior and --mix-with each mix a second score in: give one")

    try:
        records = read_jsonl(find_split_file(args.data, args.split))
        oracle = [oracle_scores(r, args.oracle) for r in records]
        stem = f"{args.data.name}_{args.split}"
        prior = None
        if args.model_prior:
            train = read_jsonl(find_split_file(args.data, args.train_split))
            prior = ModelPrior(fit_priors(train, args.oracle), oracle=args.oracle)
        mix_with = saved_scores_of(args.mix_with, records) if args.mix_with else None
        settings = {"prior": prior, "folds": args.folds, "mix_with": mix_with, "oracle": args.oracle}
        runs = [run_picks(run, stem, records, args.aggregation, **settings) for run in args.runs]
        settings["mix_with"] = None  # the --against runs as they are: the stack's gain, paired
        other = [run_picks(run, stem, records, args.aggregation, **settings) for run in args.against]
        best_models = {best for _, best in runs + other}
        if len(best_models) != 1:
            raise ValueError(
                f"the runs chose different best single models on train ({sorted(best_models)}): "
                "pool runs of one dataset and oracle"
            )
    except (OSError, ValueError) as error:
        sys.exit(f"pool_seeds: {error}")
    (best,) = best_models
    per_run = picked_scores([picked for picked, _ in runs], oracle)
    pooled = per_run.mean(axis=0)
    longest = np.array([o[int(np.argmax(longest_scores(r)))] for o, r in zip(oracle, records, strict=True)])
    best_single = np.array([o[r.models.index(best)] for o, r in zip(oracle, records, strict=True)])
    indices = bootstrap_indices(len(records), args.n_boot)

    def show(label: str, values: np.ndarray, sign: str = "+") -> None:
        low, high = interval(values, indices)
        print(f"{label}: {values.mean():{sign}.3f} [{low:{sign}.3f}, {high:{sign}.3f}]")

    for run, values, (picked, _) in zip(args.runs, per_run, runs, strict=True):
        print(
            f"{run.name}: top-1 {args.oracle} {values.mean():.3f}, − Longest {values.mean() - longest.mean():+.3f}, "
            f"GPT-Rank {gpt_rank(picked, oracle):.2f}"
        )
    print(
        f"{len(args.runs)} runs pooled, {args.aggregation}{' + model prior' if prior else ''}"
        f"{f' + {args.mix_with.name}' if args.mix_with else ''}, "
        f"{args.data.name} {args.split} ({len(records)} instructions):"
    )
    show(f"top-1 {args.oracle}", pooled, sign="")
    show("− Longest", pooled - longest)
    show(f"− {best}", pooled - best_single)
    if other:
        against = picked_scores([picked for picked, _ in other], oracle).mean(axis=0)
        print(f"against {len(args.against)} runs ({', '.join(run.name for run in args.against)}), paired:")
        show(f"their top-1 {args.oracle}", against, sign="")
        show("these − those", pooled - against)


if __name__ == "__main__":
    main()
