"""A finished run folder, read back: its configuration, results and saved networks (for ``mmhal predict``,
``mmhal export`` and ``mmhal report``).

A run folder holds ``config.yaml``, ``results.json`` and ``models/<method>-seed<seed>.pt`` (plus
``models/teacher.pt``). Every model file carries what rebuilds its network without the training data
(``engine.run.model_meta``: the shapes of every modality, the classes, the model settings); files are read
with ``torch.load(weights_only=True)`` only (never unpickled).
"""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import torch

from ..config import ModelConfig, RunConfig, apply_mapping
from ..distill import ENSEMBLES
from ..errors import UserError
from ..models.network import NetworkBase, build_network

TEACHER_FILE = "teacher.pt"


@dataclass
class RunFolder:
    """A finished run: ``path``, its ``config`` (the saved config.yaml) and ``results`` (results.json)."""

    path: Path
    config: RunConfig
    results: dict

    @property
    def methods(self) -> list[str]:
        """The methods reported in results.json (the teacher excluded), in order."""
        return [m for m in self.results.get("results", {}) if m != "teacher"]

    @property
    def seeds(self) -> list[int]:
        return [int(s) for s in self.results.get("seeds", [])]

    def model_file(self, method: str, seed: int) -> Path:
        return self.path / "models" / f"{method}-seed{seed}.pt"


def open_run(path: str | Path) -> RunFolder:
    """The finished run in folder ``path``; a UserError in one sentence when it is not one."""
    p = Path(path)
    if not p.exists():
        raise UserError(f"run folder '{p}' does not exist")
    if not p.is_dir():
        raise UserError(f"'{p}' is a file, not a run folder (give the folder `mmhal run --out` wrote)")
    res_path, cfg_path = p / "results.json", p / "config.yaml"
    if not res_path.is_file() or not cfg_path.is_file():
        from .outputs import run_marker

        missing = "results.json" if not res_path.is_file() else "config.yaml"
        marker = run_marker(p)
        if marker is not None and marker.get("command") == "tune":
            raise UserError(f"'{p}' is the folder of an mmhal tune, not of a run; run its recipe (`mmhal run --config "
                            f"{p / 'tuned.yaml'}`) and give that run's folder")
        finish = (f", or finish it with `mmhal run --resume --out {p}`" if marker is not None
                  else " (what `mmhal run --out` wrote)")
        raise UserError(f"'{p}' is not a finished mmhal run (it has no {missing}); give the folder of a run that "
                        f"completed{finish}")
    try:
        results = json.loads(res_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        raise UserError(f"'{res_path}' is not valid JSON, so the run in '{p}' cannot be read") from None
    if not isinstance(results, dict) or "results" not in results:
        raise UserError(f"'{res_path}' is not an mmhal results file")
    import yaml

    try:
        mapping = yaml.safe_load(cfg_path.read_text(encoding="utf-8")) or {}
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        raise UserError(f"'{cfg_path}' is not valid YAML, so the run in '{p}' cannot be read") from None
    if not isinstance(mapping, dict):
        raise UserError(f"'{cfg_path}' is not an mmhal configuration")
    cfg = apply_mapping(RunConfig(), mapping)
    return RunFolder(p, cfg, results)


def _others(run: RunFolder) -> str:
    """What a user can choose instead: the run's methods, or why there are none."""
    if run.methods:
        return f"choose one with --method ({', '.join(run.methods)})"
    if run.results.get("diverged"):
        return "every student of it diverged, so only --method teacher is left"
    return "only --method teacher is left"


def check_method(run: RunFolder, method: str, allow_teacher: bool = False) -> None:
    """A UserError unless ``method`` names a single network this run saved (a teacher only with ``allow_teacher``)."""
    if method == "teacher":
        if not allow_teacher:
            raise UserError("the teacher needs every privileged modality; ask for it by name with --method teacher "
                            "if that is really what you want (students are what mmhal deploys)")
        return
    if method not in run.methods:
        if method in (run.results.get("diverged") or {}):  # its students' loss became NaN: no figures, no models
            raise UserError(f"method '{method}' of the run in '{run.path}' diverged (results.json lists it under "
                            f"'diverged'), so it has nothing to use; {_others(run)}")
        holders = [e for e in run.methods if method in ENSEMBLES.get(e, ())]
        if holders:  # trained only as an ensemble's member: no figures of its own to choose a seed or fill a card
            raise UserError(f"the run in '{run.path}' trained '{method}' only as a member of {holders[0]}, so it "
                            f"reports no figures of '{method}' alone; {_instead(run, holders[0])}")
        raise UserError(f"the run in '{run.path}' has no method '{method}'; it has {', '.join(run.methods)}")
    if method in ENSEMBLES:
        members = ENSEMBLES[method]
        reported = [m for m in members if m in run.methods]
        if reported:
            raise UserError(f"'{method}' is an ensemble of several networks ({', '.join(members)}), not one saved "
                            f"model; choose one of its members with --method ({', '.join(reported)}), or apply the "
                            f"whole ensemble with `mmhal predict {run.path} --method {method}`")
        raise UserError(f"'{method}' is an ensemble of several networks ({', '.join(members)}), not one saved model, "
                        f"and the run reports none of them alone; {_instead(run, method)}")


def _instead(run: RunFolder, ensemble: str) -> str:
    """What works instead of exporting a member of ``ensemble`` that the run does not report: predicting with the
    whole ensemble, exporting a single-network method it reports, or running again with the members reported."""
    singles = [m for m in run.methods if m not in ENSEMBLES]
    names = [m for m in ENSEMBLES[ensemble] if "@" not in m and "." not in m]  # those --methods accepts
    parts = [f"apply the ensemble with `mmhal predict {run.path} --method {ensemble}`"]
    if singles:
        parts.append(f"export a single-network method of the run (--method {', '.join(singles)})")
    if names:
        parts.append(f"run the comparison again with {', '.join(names)} in --methods to export "
                     f"{'it' if len(names) == 1 else 'them'}")
    return ", ".join(parts[:-1]) + (", or " if len(parts) > 1 else "") + parts[-1]


def model_files(run: RunFolder, method: str, seed: Optional[int] = None) -> list[tuple[Optional[int], Path]]:
    """``[(seed, file)]`` of ``method``'s saved networks (``seed`` None = every seed of the run; the teacher
    has one file, seed None); a UserError when one is missing."""
    if method == "teacher":
        files = [(None, run.path / "models" / TEACHER_FILE)]
    else:
        seeds = run.seeds if seed is None else [seed]
        if seed is not None and seed not in run.seeds:
            raise UserError(f"the run in '{run.path}' has no seed {seed}; its seeds are "
                            f"{', '.join(map(str, run.seeds))}")
        files = [(s, run.model_file(method, s)) for s in seeds]
    for _, f in files:
        if not f.is_file():
            raise UserError(f"the saved model '{f}' is missing from the run folder")
    return files


def load_checkpoint(path: Path) -> dict:
    """A model file of a run (tensors and plain values only); a UserError naming it when it cannot be read."""
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # truncated, garbage, or not a torch file; never relay torch's weights_only advice
        raise UserError(f"the model file '{path}' cannot be read ({type(exc).__name__}); it is damaged or not an "
                        "mmhal model file") from None
    if not isinstance(ckpt, dict) or "model" not in ckpt or "modalities" not in ckpt:
        raise UserError(f"'{path}' is not an mmhal model file")
    if "shapes" not in ckpt:
        raise UserError(f"the model file '{path}' was written by an older mmhal that did not record the data "
                        "shapes; run the comparison again with this version to predict or export from it")
    return ckpt


#: model settings added later, as the networks saved before them were built (a file without the key is one of those)
SAVED_BEFORE = {"pool": "mean"}


def build_saved_network(ckpt: dict) -> NetworkBase:
    """The network of a model file (``load_checkpoint``), with its trained weights, in eval mode, on the CPU."""
    saved = {**SAVED_BEFORE, **ckpt["model_config"]}
    model_cfg = ModelConfig(**{f.name: saved[f.name] for f in dataclasses.fields(ModelConfig) if f.name in saved})
    shapes = {m: tuple(s) for m, s in ckpt["shapes"].items()}
    net = build_network(shapes, list(ckpt["modalities"]), int(ckpt["num_classes"]), model_cfg)
    net.load_state_dict(ckpt["model"])
    return net.eval()


def load_network(path: Path) -> tuple[NetworkBase, dict]:
    """(network, checkpoint) of a model file."""
    ckpt = load_checkpoint(path)
    return build_saved_network(ckpt), ckpt


def choose_method(run: RunFolder, method: Optional[str], ensembles: bool = False) -> str:
    """The method ``predict`` or ``export`` uses: ``method`` when given (the teacher only when named so),
    else the run's recommendation (``results.json["recommendation"]["method"]``); a UserError when the run
    saved no such network (an ensemble is accepted only with ``ensembles``)."""
    if method is None:
        method = (run.results.get("recommendation") or {}).get("method")
        if not method:
            raise UserError(f"the run in '{run.path}' recommends no single-network method; {_others(run)}")
        if method == "teacher":
            raise UserError(f"the recommendation of the run in '{run.path}' names the teacher, which needs every "
                            "privileged modality; pass --method teacher if that is really what you want")
        check_method(run, method)
        return method
    if ensembles and method in run.methods and method in ENSEMBLES:
        return method
    check_method(run, method, allow_teacher=True)
    return method


def method_members(method: str) -> tuple[str, ...]:
    """The saved networks whose logits ``method`` sums per seed: an ensemble's members, else the method itself."""
    return ENSEMBLES.get(method, (method,))


def best_seed(run: RunFolder, method: str) -> int:
    """The seed whose ``method`` network has the highest validation accuracy
    (``results[method]["val_accuracy"]["per_seed"]``, in the order of ``seeds``; the first on ties)."""
    try:
        per_seed = run.results["results"][method]["val_accuracy"]["per_seed"]
    except (KeyError, TypeError):
        raise UserError(f"'{run.path / 'results.json'}' has no validation accuracy of '{method}'; choose a seed "
                        "with --seed") from None
    seeds = run.seeds
    if len(per_seed) != len(seeds) or not seeds:
        raise UserError(f"'{run.path / 'results.json'}' lists {len(seeds)} seeds but {len(per_seed)} validation "
                        f"accuracies of '{method}'; choose a seed with --seed")
    best = max(range(len(seeds)), key=lambda i: (per_seed[i], -i))
    return seeds[best]
