"""Ways to combine the detector's two terms, each scored on a check's test videos: can one rule serve every camera?

    .venv/bin/python benchmarks/travel/combine.py --dataset NAME --root DIR --tubes RUN/terms-tubes.npz
                     [--flow FLOW.npz] [--dev 01,02,...] [--out FILE.json]

From the per-tube z-scores that benchmarks/travel/terms.py keeps (`--tubes`: each test tube's tube z `t`, the
learned term, and appearance z `a`), every combination below is turned into frame scores as `vadgpu eval` scores
object models (frame = max over its tubes, median 17) and measured, micro and macro AUC on all test videos and on
the `--dev` ones. No pass over the videos; a measurement only.

    t + w a              a fixed weight of the appearance term (w = 1: the detector; w = 0: the tube term alone)
    t + max(a - k, 0)    the appearance term counted only above k standard deviations of the training boxes'
    max(t, a)            the larger z-score
    softmax tau          tau * log(exp(t / tau) + exp(a / tau)): between the larger z-score (tau -> 0) and the
                         sum (large tau, shifted by a constant)

With `--flow` (flow_term.py's `--keep`: each test tube's optical-flow z-score `f`), the rules with a third term:

    t + a + w f          the flow term at a fixed weight
    t + a + max(f - k, 0)   the flow term counted only above k standard deviations of the training boxes'
    max(t, a, f)         the largest z-score
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "ped2"))
sys.path.insert(0, str(HERE))

from script_errors import open_catalog, run  # noqa: E402  (benchmarks/ped2)
from motion_term import load_tubes, term_parser  # noqa: E402  (beside this script)
from terms import aucs  # noqa: E402

WEIGHTS = (0.0, 0.1, 0.25, 0.5, 0.75, 1.0, 1.5)
KNEES = (1.0, 2.0, 3.0)
TEMPERATURES = (0.5, 1.0, 2.0)
FLOW_WEIGHTS = (0.25, 0.5, 1.0)


def softmax(t: np.ndarray, a: np.ndarray, tau: float) -> np.ndarray:
    top = np.maximum(t, a)
    return top + tau * np.log(np.exp((t - top) / tau) + np.exp((a - top) / tau))


def combinations(t: np.ndarray, a: np.ndarray, f: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """Every rule of the module docstring, by the name the results table shows (those with `f` only with it)."""
    out = {f"t + {w:g} a": t + w * a for w in WEIGHTS}
    out.update({f"t + max(a - {k:g}, 0)": t + np.maximum(a - k, 0.0) for k in KNEES})
    out["max(t, a)"] = np.maximum(t, a)
    out.update({f"softmax tau {tau:g}": softmax(t, a, tau) for tau in TEMPERATURES})
    if f is not None:
        out.update({f"t + a + {w:g} f": t + a + w * f for w in FLOW_WEIGHTS})
        out.update({f"t + a + max(f - {k:g}, 0)": t + a + np.maximum(f - k, 0.0) for k in KNEES})
        out["max(t, a, f)"] = np.maximum(np.maximum(t, a), f)
    return out


def main() -> None:
    from vadgpu.data.prepare import load_prepared
    from vadgpu.io import atomic_write_json

    parser = term_parser(__doc__, boxes=False)
    parser.add_argument("--flow", default=None, help="flow_term.py's per-tube flow z-scores (its --keep file) for "
                        "the same --tubes")
    parser.add_argument("--out", default=None, help="JSON record (default: print only)")
    args = parser.parse_args()
    dataset = open_catalog(parser, args.dataset, args.root)
    test = list(load_prepared(dataset, "cpu", progress=False).test)
    tubes = load_tubes(args.tubes)
    video, frame, t, a = (tubes[k] for k in ("video", "frame", "tube", "looks"))
    names = [str(n) for n in tubes["names"]]
    if names != [v.name for v in test]:
        parser.error(f"--tubes {args.tubes} was made for test videos {names}, not {args.dataset}'s at {args.root}")
    f = None
    if args.flow:
        try:
            with np.load(args.flow, allow_pickle=False) as kept:
                f, made_from = kept["flow"], str(kept["tubes"])
        except (OSError, KeyError, ValueError) as exc:
            parser.error(f"--flow {args.flow}: not a per-tube file of flow_term.py --keep ({exc})")
        if f.shape != t.shape or made_from != Path(args.tubes).name:
            parser.error(f"--flow {args.flow} holds {f.size} tubes of {made_from}, not the {t.size} of {args.tubes}")
    dev = [name for name in args.dev.split(",") if name]
    rows = {name: aucs(test, video, frame, values, dev) for name, values in combinations(t, a, f).items()}
    result = {"tubes": Path(args.tubes).name, "flow": args.flow and Path(args.flow).name, "dataset": dataset.name,
              "dev": dev, "test_tubes": int(t.size), "combinations": rows}
    if args.out:
        atomic_write_json(args.out, result)
    for name, row in rows.items():
        print(f"{name:24s} {row['micro_auc']:6.2f} / {row['macro_auc']:6.2f}   dev {row.get('dev_micro_auc')} / "
              f"{row.get('dev_macro_auc')}")


if __name__ == "__main__":
    run(main)
