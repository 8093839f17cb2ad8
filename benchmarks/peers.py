"""What would a practitioner fit instead? Standard learners on the same splits as ``mmhal run``, tuned on validation.

For each setting (a dataset and its deployed student, ``science.SETTINGS``) this fits scikit-learn's standard
learners (and LightGBM where installed) on the student's modalities and on all the teacher's, each learner's
settings and inputs chosen by **validation** accuracy over a fixed random search (the same budget for every learner
and dataset), and reports its **test** accuracy: the mean over ``--seeds`` seeds for learners that draw random
numbers (forests, boosting with bagging, MLP), one fit otherwise. Inputs (``mmhal.engine.learners.feature_views``):
``raw`` values (flattened) and, for sequences, per-channel ``statistics`` (mean, sd, min, max, quantiles, mean
absolute step, mean crossings, and the norm over channels). The splits are mmhal's own (``load_dataset`` with the
default ``DataConfig``), so these figures sit beside a run's.

    python benchmarks/peers.py --settings hapt-gyro,hapt-acc --seeds 5 --out runs/peers
    python benchmarks/peers.py --settings satellite-visible,cellseg-tubulin,mfeat-fou --data-dir data --out runs/peers
    python benchmarks/peers.py --out runs/peers --table-only           # the table of what is finished

Each (setting, inputs, learner) is written to ``OUT/<setting>.json`` as it finishes; a second call skips what is
there. ``--trials`` configurations per learner (default 8), drawn from ``SPACES`` with a fixed seed.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
from science import SETTINGS  # noqa: E402

from mmhal.config import DataConfig  # noqa: E402
from mmhal.data.base import load_dataset  # noqa: E402
from mmhal.engine.learners import feature_views, has_lightgbm  # noqa: E402


def _log_uniform(rng, lo, hi):
    return float(np.exp(rng.uniform(np.log(lo), np.log(hi))))


def space_hgb(rng):
    return {"learning_rate": _log_uniform(rng, 0.02, 0.3), "max_iter": int(rng.choice([100, 200, 400])),
            "max_leaf_nodes": int(rng.choice([15, 31, 63])), "l2_regularization": _log_uniform(rng, 1e-3, 10),
            "min_samples_leaf": int(rng.choice([5, 20, 50]))}


def space_lgbm(rng):
    return {"learning_rate": _log_uniform(rng, 0.02, 0.3), "n_estimators": int(rng.choice([100, 200, 400])),
            "num_leaves": int(rng.choice([15, 31, 63])), "subsample": float(rng.uniform(0.6, 1.0)),
            "colsample_bytree": float(rng.uniform(0.5, 1.0)), "reg_lambda": _log_uniform(rng, 1e-3, 10),
            "min_child_samples": int(rng.choice([5, 20, 50]))}


def space_forest(rng):
    return {"n_estimators": int(rng.choice([200, 400])), "max_features": str(rng.choice(["sqrt", "log2"])),
            "min_samples_leaf": int(rng.choice([1, 2, 5]))}


def space_logreg(rng):
    return {"C": _log_uniform(rng, 1e-3, 1e2)}


def space_mlp(rng):
    width = int(rng.choice([64, 128, 256]))
    return {"hidden_layer_sizes": (width,) * int(rng.choice([1, 2])), "alpha": _log_uniform(rng, 1e-5, 1e-1),
            "learning_rate_init": _log_uniform(rng, 3e-4, 3e-3)}


def space_knn(rng):
    return {"n_neighbors": int(rng.choice([1, 3, 5, 9, 15, 25])), "weights": str(rng.choice(["uniform", "distance"]))}


def make(name: str, params: dict, seed: int):
    from sklearn.ensemble import ExtraTreesClassifier, HistGradientBoostingClassifier, RandomForestClassifier
    from sklearn.linear_model import LogisticRegression
    from sklearn.neighbors import KNeighborsClassifier
    from sklearn.neural_network import MLPClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    if name == "hgb":
        return HistGradientBoostingClassifier(early_stopping=False, random_state=seed, **params)
    if name == "lgbm":
        from lightgbm import LGBMClassifier

        return LGBMClassifier(random_state=seed, n_jobs=1, verbose=-1, subsample_freq=1, **params)
    if name == "rf":
        return RandomForestClassifier(random_state=seed, n_jobs=1, **params)
    if name == "et":
        return ExtraTreesClassifier(random_state=seed, n_jobs=1, **params)
    if name == "logreg":
        return make_pipeline(StandardScaler(), LogisticRegression(max_iter=3000, **params))
    if name == "mlp":
        return make_pipeline(StandardScaler(), MLPClassifier(max_iter=300, early_stopping=True, random_state=seed,
                                                             **params))
    if name == "knn":
        return make_pipeline(StandardScaler(), KNeighborsClassifier(**params))
    raise ValueError(name)


SPACES = {"hgb": space_hgb, "lgbm": space_lgbm, "rf": space_forest, "et": space_forest, "logreg": space_logreg,
          "mlp": space_mlp, "knn": space_knn}
RANDOM = {"hgb": False, "lgbm": True, "rf": True, "et": True, "logreg": False, "mlp": True, "knn": False}


def run_learner(name, views, y, trials: int, seeds: int) -> dict:
    rng = np.random.default_rng(12345)
    configs = [SPACES[name](rng) for _ in range(trials)]
    best = None
    t0 = time.time()
    for view, X in views.items():
        for params in configs:
            model = make(name, params, 0).fit(X["train"], y["train"])
            acc = float(model.score(X["val"], y["val"]))
            if best is None or acc > best[0]:
                best = (acc, view, params)
    val_acc, view, params = best
    tests, vals = [], []
    for s in range(seeds if RANDOM[name] else 1):
        model = make(name, params, s).fit(views[view]["train"], y["train"])
        tests.append(float(model.score(views[view]["test"], y["test"])))
        vals.append(float(model.score(views[view]["val"], y["val"])))
    return {"learner": name, "view": view, "params": {k: (list(v) if isinstance(v, tuple) else v)
                                                      for k, v in params.items()},
            "val_accuracy": float(np.mean(vals)), "test_accuracy": float(np.mean(tests)), "test_per_seed": tests,
            "seconds": round(time.time() - t0, 1)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--settings", default=",".join(SETTINGS))
    ap.add_argument("--learners", default="hgb,lgbm,rf,et,logreg,mlp,knn")
    ap.add_argument("--trials", type=int, default=8)
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--data-dir", default="data")
    ap.add_argument("--out", default="runs/peers")
    ap.add_argument("--table-only", action="store_true")
    a = ap.parse_args()
    import threadpoolctl

    threadpoolctl.threadpool_limits(1)
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    names = [n for n in a.learners.split(",") if n != "lgbm" or has_lightgbm()]
    for setting in a.settings.split(","):
        file = out / f"{setting}.json"
        done = json.loads(file.read_text()) if file.is_file() else {}
        if not a.table_only:
            data_name, student, _ = SETTINGS[setting]
            data = load_dataset(DataConfig(name=data_name if data_name == "hapt" else str(Path(a.data_dir) / data_name)))
            y = {s: data.labels[data.indices(s)] for s in ("train", "val", "test")}
            for inputs, mods in (("student", [student]), ("teacher", sorted(data.modalities))):
                views: dict = {}
                for s in ("train", "val", "test"):
                    idx = data.indices(s)
                    for v, X in feature_views({m: data.modalities[m][idx] for m in mods}, mods, max_raw=4096).items():
                        views.setdefault(v, {})[s] = X
                for name in names:
                    key = f"{inputs}/{name}"
                    if key in done:
                        continue
                    print(f"[{time.strftime('%H:%M:%S')}] {setting} {inputs} ({'+'.join(mods)}) {name}", flush=True)
                    done[key] = {**run_learner(name, views, y, a.trials, a.seeds), "modalities": mods}
                    file.write_text(json.dumps(done, indent=1))
                    r = done[key]
                    print(f"    {r['view']}: val {100 * r['val_accuracy']:.2f} test {100 * r['test_accuracy']:.2f} "
                          f"({r['seconds']} s)", flush=True)
        print(f"\n{setting}")
        print("| inputs | learner | view | val % | test % | chosen settings |")
        print("|---|---|---|---|---|---|")
        for key, r in sorted(done.items(), key=lambda kv: (kv[0].split("/")[0], -kv[1]["val_accuracy"])):
            print(f"| {'+'.join(r['modalities'])} | {r['learner']} | {r['view']} | {100 * r['val_accuracy']:.2f} | "
                  f"{100 * r['test_accuracy']:.2f} | {json.dumps(r['params'])} |")
        for inputs in ("student", "teacher"):
            rows = [r for k, r in done.items() if k.startswith(inputs + "/")]
            if rows:
                best = max(rows, key=lambda r: r["val_accuracy"])
                print(f"best on validation, {inputs} ({'+'.join(best['modalities'])}): {best['learner']} "
                      f"({best['view']}) test {100 * best['test_accuracy']:.2f}; best test of any: "
                      f"{100 * max(r['test_accuracy'] for r in rows):.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
