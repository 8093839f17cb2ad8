"""``mmhal export``: one trained network of a finished run, self-contained, for deployment, with a model card.

    mmhal export RUN                                 # the recommended method, its best seed, ONNX
    mmhal export RUN --method kd --seed 2 --format torchscript

What is exported is :class:`Deployable`: the network with its normalisation inside (the train split's
per-channel mean and std are buffers of the model), taking the modalities it needs as positional float32
tensors in a fixed order (``modalities``, which are also the ONNX input names), each ``(batch, *shape)``
with any batch size, and returning ``logits`` and ``probabilities`` (softmax of the logits), ``(batch, K)``.

* ``onnx``: ``model.onnx``, written by PyTorch's TorchScript-based exporter (``torch.onnx.export(...,
  dynamo=False)``, opset 17, the batch axis dynamic): it handles both backbones (small, resnet18) on every
  PyTorch mmhal supports and takes about a second, where the torch.export-based exporter takes tens of
  seconds; the check below guards the result. Needs ``pip install "mmhal[export]"`` (onnx, onnxruntime).
* ``torchscript``: ``model.pt``, traced (``torch.jit.trace``) and loadable with ``torch.jit.load`` alone;
  the model card is inside it too (extra file ``model_card.json``).

Before anything is kept, the exported model runs (onnxruntime, or the reloaded TorchScript module) on 256
random inputs distributed like the train data (per channel: the train mean plus the train std times a
standard normal draw), in one batch of 256 and one of 3, and its logits must equal PyTorch's within 1e-4.
The folder (``model.*``, ``model_card.md``, ``model_card.json`` and the marker ``.mmhal-export`` listing them
with their SHA-256) is written into a hidden sibling and renamed into place when complete: a failure leaves
nothing behind. An existing folder is replaced, with ``--overwrite``, only when it is an earlier export that
holds nothing else, and never a run's own folder (``engine.outputs``, the rule of every writing command).

The method is ``--method`` or the run's recommendation; the teacher only as ``--method teacher``; an
ensemble is refused (it is two networks; export its members one by one). The seed is ``--seed`` or the one
whose network has the best validation accuracy (``results.json`` ``results[method]["val_accuracy"]
["per_seed"]``; the first on ties).
"""
from __future__ import annotations

import contextlib
import inspect
import io
import json
import warnings
from pathlib import Path
from typing import Callable, Optional

import numpy as np
import torch
from torch import nn

from .. import __version__
from ..config import method_config
from ..data.base import input_kind
from ..errors import UserError
from ..models.network import NetworkBase
from ..utils import atomic_write_json, atomic_write_text, file_sha256
from .artifacts import RunFolder, best_seed, choose_method, load_network, model_files, open_run
from .outputs import Output, out_path, plan_output, write_folder

FILES = {"onnx": "model.onnx", "torchscript": "model.pt"}
OPSET = 17
CHECK_SAMPLES = 256
CHECK_BATCHES = (CHECK_SAMPLES, 3)  # two batch sizes: the batch axis must be dynamic
TOLERANCE = 1e-4
OUTPUTS = ("logits", "probabilities")
INSTALL = 'pip install "mmhal[export]"'


class Deployable(nn.Module):
    """``network`` as deployed: ``forward(*inputs)`` takes one float32 tensor ``(batch, *shape)`` per modality,
    in the order of ``modalities``, and returns ``(logits, softmax(logits))``."""

    def __init__(self, network: NetworkBase):
        super().__init__()
        self.network = network
        self.modalities = list(network.modalities)
        self.eval()  # the exporter restores the wrapper's mode on every submodule afterwards: it must be eval too

    def forward(self, *inputs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        logits = self.network(dict(zip(self.modalities, inputs))).logits
        return logits, torch.softmax(logits, dim=1)


def sample_inputs(network: NetworkBase, shapes: dict, n: int = CHECK_SAMPLES, seed: int = 0) -> list[torch.Tensor]:
    """``n`` random inputs per modality of ``network``, distributed like its train data: per channel (per
    feature for vectors), the train mean plus the train std times a standard normal draw."""
    g = torch.Generator().manual_seed(seed)
    out = []
    for m in network.modalities:
        norm = network.norms[m]
        x = torch.randn((n, *shapes[m]), generator=g)
        out.append(norm.mean.view(norm.view) + norm.std.view(norm.view) * x)
    return out


# ----------------------------------------------------------------------------- formats
def require_onnx() -> tuple:
    """(onnx, onnxruntime); a UserError naming the install command when either is missing."""
    try:
        import onnx
        import onnxruntime
    except ImportError:
        raise UserError(f"--format onnx needs the packages onnx and onnxruntime; install them with `{INSTALL}` "
                        "(or use --format torchscript)") from None
    return onnx, onnxruntime


@contextlib.contextmanager
def _quiet():
    """Hide the exporters' notes (deprecation notices; tracer notes on shape checks, which are constants of
    the architecture: the batch axis is checked by running two batch sizes)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


def write_onnx(model: Deployable, example: list[torch.Tensor], path: Path, metadata: dict) -> None:
    """``model`` as an ONNX file at ``path``: inputs named after the modalities, outputs ``logits`` and
    ``probabilities``, the batch axis dynamic; ``metadata`` (str -> str) in the file's metadata_props."""
    onnx, _ = require_onnx()
    names = list(model.modalities)
    kwargs = dict(input_names=names, output_names=list(OUTPUTS), opset_version=OPSET, do_constant_folding=True,
                  dynamic_axes={n: {0: "batch"} for n in [*names, *OUTPUTS]})
    if "dynamo" in inspect.signature(torch.onnx.export).parameters:
        kwargs["dynamo"] = False  # the TorchScript-based exporter (see the module docstring)
    buf = io.BytesIO()  # through memory: the exporters' C++ side cannot open a path the locale cannot encode
    with _quiet(), torch.no_grad():
        torch.onnx.export(model, tuple(example), buf, **kwargs)
    proto = onnx.load_from_string(buf.getvalue())
    onnx.checker.check_model(proto)
    for k, v in metadata.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = k, v
    Path(path).write_bytes(proto.SerializeToString())


def run_onnx(path: Path, names: list[str]) -> Callable[[list[torch.Tensor]], np.ndarray]:
    """A function: inputs -> the ONNX model's logits, run by onnxruntime on the CPU."""
    _, ort = require_onnx()
    session = ort.InferenceSession(Path(path).read_bytes(), providers=["CPUExecutionProvider"])
    return lambda xs: session.run(["logits"], {n: x.numpy() for n, x in zip(names, xs)})[0]


def write_torchscript(model: Deployable, example: list[torch.Tensor], path: Path, card: dict) -> None:
    """``model`` traced into a TorchScript file at ``path`` (the model card inside as ``model_card.json``)."""
    with _quiet(), torch.no_grad():
        traced = torch.jit.trace(model, tuple(example), check_trace=False)
        buf = io.BytesIO()  # through memory, as write_onnx
        torch.jit.save(traced, buf, _extra_files={"model_card.json": json.dumps(card, indent=2)})
    Path(path).write_bytes(buf.getvalue())


def run_torchscript(path: Path, names: list[str]) -> Callable[[list[torch.Tensor]], np.ndarray]:
    """A function: inputs -> the TorchScript model's logits, from the file reloaded with ``torch.jit.load``."""
    with _quiet():
        loaded = torch.jit.load(io.BytesIO(Path(path).read_bytes()), map_location="cpu")

    def run(xs):
        with torch.no_grad():
            return loaded(*xs)[0].numpy()
    return run


def check_outputs(model: Deployable, run: Callable[[list[torch.Tensor]], np.ndarray],
                  inputs: list[torch.Tensor]) -> float:
    """The largest |exported - PyTorch| over the logits of ``inputs``, run as one batch of all of them and one
    of the first 3 (the batch axis must be dynamic)."""
    worst = 0.0
    for b in CHECK_BATCHES:
        xs = [x[:b] for x in inputs]
        with torch.no_grad():
            ref = model(*xs)[0].numpy()
        got = np.asarray(run(xs))
        if got.shape != ref.shape:
            raise UserError(f"the exported model returned logits of shape {got.shape} for a batch of {b} where "
                            f"PyTorch gives {ref.shape}, so nothing was written")
        worst = max(worst, float(np.abs(got.astype(np.float64) - ref).max()))
    return worst


# ----------------------------------------------------------------------------- the model card
def _stat(summary: Optional[dict], index: int) -> Optional[dict]:
    """One metric of results.json for the exported network (``index`` into ``per_seed``) and its method."""
    if not isinstance(summary, dict):
        return None
    per_seed = summary.get("per_seed") or []
    return {"this_network": per_seed[index] if index < len(per_seed) else None, "method_mean": summary.get("mean"),
            "method_ci95": summary.get("ci95"), "method_std": summary.get("std"), "seeds": len(per_seed)}


def input_description(kind: str, shape: tuple, from_files: bool, unit: Optional[str] = None) -> str:
    """What the values of one input are: what mmhal fed the network while training (it normalises them itself)."""
    if kind == "image" and from_files:
        c = "RGB" if shape[0] == 3 else "grey"
        return (f"{c} pixel values 0..255 of an image file decoded and resized (bilinear, antialiased) to "
                f"{shape[1]}x{shape[2]}")
    return "unscaled values as in the training data" + (f" (in {unit})" if unit else "")


def model_card(run: RunFolder, method: str, seed: Optional[int], ckpt: dict, network: NetworkBase,
               fmt: str, how: dict) -> dict:
    """The model card (JSON-ready): what the model is, its inputs and outputs, where it came from, how it was
    chosen, its validation and evaluation figures with 95 % intervals (results.json), and its intended use."""
    res = run.results
    entry = res["results"][method]
    index = 0 if seed is None else run.seeds.index(seed)
    shapes = {m: tuple(ckpt["shapes"][m]) for m in network.modalities}
    eval_split = res.get("evaluated_on", "test")
    metrics = {"validation": {"accuracy": _stat(entry.get("val_accuracy"), index)},
               eval_split: {"accuracy": _stat(entry.get("accuracy"), index),
                            "macro_f1": _stat(entry.get("macro_f1"), index)}}
    pad = entry.get("pad")
    if pad:
        metrics["pad"] = {k: _stat(pad.get(k), index) for k in ("acer", "apcer", "bpcer", "hter", "eer", "auc",
                                                                  "threshold")}
        metrics["pad"].update(criterion=pad.get("criterion"), scoring=pad.get("scoring"))
    teacher_mods = list(res.get("teacher_modalities", []))
    privileged = [m for m in teacher_mods if m not in network.modalities]
    classes = list(ckpt["class_names"])
    from_files = not str(run.config.data.name).endswith(".npz")  # images of a manifest or a face dataset
    units = (res.get("data_info") or {}).get("units") or {}  # e.g. HAPT: acc in g, gyro in rad/s
    use = (f"Classify {res.get('dataset', 'the run')}-like samples into {', '.join(classes)} from "
           f"{' + '.join(network.modalities)} alone"
           + (f", where the teacher's other modalities ({', '.join(privileged)}) are not available"
              if privileged else "")
           + ". Feed the inputs exactly as mmhal read its training data (no scaling: the model normalises them). "
           f"The figures come from the run's {eval_split} split, drawn from the same source as its training data; "
           "they do not carry over to other populations, sensors or conditions, so validate on data from the "
           "deployment setting first.")
    if any(len(shapes[m]) == 4 for m in network.modalities):  # action clips: the run scored views, not one clip
        c = run.config.data.clip
        use += (f" The model takes one clip of {c.length} frames (every {c.stride}); the run's {eval_split} figures "
                f"average the softmax over {c.num_test_clips} evenly spaced clips x {c.test_crops} crop(s) of each "
                "video (data.clip; `mmhal predict` does the same), its validation figures one centre clip and crop.")
    threshold = (metrics.get("pad") or {}).get("threshold") or {}
    if pad and threshold.get("this_network") is not None:
        use += (" For presentation-attack detection, accept a sample as bona fide when probabilities[:, "
                f"{classes.index('bona_fide')}] >= {threshold['this_network']:.6g}, this network's threshold "
                f"chosen on validation (criterion {pad.get('criterion')}).")
    how = dict(how)
    if ckpt.get("best_epoch") and ckpt.get("history"):
        epochs = len(ckpt["history"])
        how["epoch"] = f"epoch {ckpt['best_epoch']} of {epochs}, {how.get('epoch', 'chosen on validation')}"
    return {
        "model": FILES[fmt], "format": fmt, "method": method, "seed": seed,
        "mmhal": __version__, "torch": torch.__version__,
        "dataset": res.get("dataset"), "data_fingerprint": (res.get("teacher") or {}).get("data"),
        "run": str(run.path.resolve()),
        "teacher_modalities": teacher_mods, "student_modalities": list(network.modalities),
        "class_names": classes,
        "inputs": [{"name": m, "position": i, "dtype": "float32", "shape": ["batch", *shapes[m]],
                    "kind": input_kind(shapes[m]),
                    "values": input_description(input_kind(shapes[m]), shapes[m], from_files, units.get(m))}
                   for i, m in enumerate(network.modalities)],
        "outputs": [{"name": "logits", "dtype": "float32", "shape": ["batch", len(classes)]},
                    {"name": "probabilities", "dtype": "float32", "shape": ["batch", len(classes)],
                     "values": "softmax of the logits, in the order of class_names"}],
        "normalisation": "inside the model: (x - mean) / std per channel (per feature for vectors), with the "
                         "statistics of the run's train split",
        "normalisation_stats": {m: {"mean": network.norms[m].mean.tolist(), "std": network.norms[m].std.tolist()}
                                for m in network.modalities},
        "selection": how,
        "evaluated_on": eval_split,
        "metrics": metrics,
        "intended_use": use,
        "warnings": list(res.get("warnings", [])),
    }


def _pct(v) -> str:
    return "n/a" if v is None else f"{100 * v:.2f} %"


def _interval(s: dict) -> str:
    ci = s.get("method_ci95")
    ci_text = f" [{100 * ci[0]:.2f}, {100 * ci[1]:.2f}]" if ci else ""
    return f"{_pct(s.get('method_mean'))}{ci_text} over {s.get('seeds')} seeds"


def card_markdown(card: dict) -> str:
    """The model card as Markdown (``model_card.md``); ``model_card.json`` holds the same and more."""
    c = card
    who = f"{c['method']}" + ("" if c["seed"] is None else f", seed {c['seed']}")
    lines = [f"# Model card: {who} ({c['dataset']})", "",
             f"`{c['model']}` ({c['format']}), exported by mmhal {c['mmhal']} (PyTorch {c['torch']}) from the run "
             f"`{c['run']}`.", "",
             "## Inputs and outputs", "",
             "Positional inputs, in this order (ONNX input names = the names):", "",
             "| # | name | shape | values |", "|---|---|---|---|"]
    for i in c["inputs"]:
        shape = ", ".join(map(str, i["shape"]))
        lines.append(f"| {i['position']} | `{i['name']}` | ({shape}) float32 | {i['values']} |")
    lines += ["", f"Outputs: `logits` and `probabilities` (softmax), each (batch, {len(c['class_names'])}), in the "
                  f"order of the classes: {', '.join(f'{k} = {n}' for k, n in enumerate(c['class_names']))}.",
              f"Normalisation is {c['normalisation']}; the batch size is free.", "",
              "## Data and modalities", "",
              f"- dataset: {c['dataset']}; data fingerprint `{c['data_fingerprint']}` (labels, split and every "
              "modality's content; `results.json` teacher.data)",
              f"- teacher modalities: {', '.join(c['teacher_modalities'])}; this network's (the student's): "
              f"{', '.join(c['student_modalities'])}", "",
              "## How it was selected", ""]
    lines += [f"- {k}: {v}" for k, v in c["selection"].items()]
    lines += ["", "## Figures", "",
              "From the run's results.json: this network, and its method's mean over seeds with the 95 % t-interval.",
              "", "| split | metric | this network | method |", "|---|---|---|---|"]
    for split, group in c["metrics"].items():
        for name, s in group.items():
            if not isinstance(s, dict):
                continue
            if name == "threshold":
                v = s["this_network"]
                lines.append(f"| validation | PAD threshold on P(bona fide) | {'n/a' if v is None else f'{v:.6g}'} | |")
                continue
            where = c["evaluated_on"] if split == "pad" else split
            lines.append(f"| {where} | {name.upper() if split == 'pad' else name.replace('_', '-')} | "
                         f"{_pct(s['this_network'])} | {_interval(s)} |")
    if "pad" in c["metrics"]:
        p = c["metrics"]["pad"]
        lines += ["", f"PAD: threshold by criterion '{p['criterion']}' on validation, scoring per {p['scoring']}."]
    lines += ["", "## Intended use", "", c["intended_use"], ""]
    if c["warnings"]:
        lines += ["Warnings of the run:", ""] + [f"- {w}" for w in c["warnings"]] + [""]
    chk = c["check"]
    lines += ["## Check", "",
              f"{chk['runtime']} on {chk['samples']} random inputs distributed like the train data (batches of "
              f"{' and '.join(map(str, chk['batch_sizes']))}): largest |logit difference| to PyTorch "
              f"{chk['max_abs_diff']:.3g} (tolerance {chk['tolerance']:g}).", "",
              f"File SHA-256: `{c['sha256']}`.", ""]
    return "\n".join(lines)


def export(run: RunFolder, method: str, seed: Optional[int], fmt: str, out: Output, how: dict) -> dict:
    """Export ``method``'s network of ``seed`` (None: the teacher) as ``fmt`` into the folder ``out`` (planned by
    ``outputs.plan_output``), checked against PyTorch; returns the model card."""
    [(_, path)] = model_files(run, method, seed)
    network, ckpt = load_network(path)
    model = Deployable(network).eval()
    shapes = {m: tuple(ckpt["shapes"][m]) for m in network.modalities}
    inputs = sample_inputs(network, shapes)
    card = model_card(run, method, seed, ckpt, network, fmt, how)

    def fill(folder: Path) -> None:
        file = folder / FILES[fmt]
        example = [x[:2] for x in inputs]
        if fmt == "onnx":
            meta = {"mmhal.method": method, "mmhal.seed": str(seed),
                    "mmhal.class_names": json.dumps(card["class_names"]),
                    "mmhal.modalities": json.dumps(card["student_modalities"]),
                    "mmhal.data": str(card["data_fingerprint"])}
            write_onnx(model, example, file, meta)
            runner, runtime = run_onnx(file, model.modalities), f"onnxruntime {require_onnx()[1].__version__}"
        else:
            write_torchscript(model, example, file, {k: v for k, v in card.items() if k != "normalisation_stats"})
            runner, runtime = run_torchscript(file, model.modalities), f"torch.jit.load (PyTorch {torch.__version__})"
        diff = check_outputs(model, runner, inputs)
        card["check"] = {"runtime": runtime, "samples": CHECK_SAMPLES, "batch_sizes": list(CHECK_BATCHES),
                         "max_abs_diff": diff, "tolerance": TOLERANCE, "passed": diff <= TOLERANCE}
        if not diff <= TOLERANCE:
            raise UserError(f"the exported {fmt} model's logits differ from PyTorch's by up to {diff:.3g} (more than "
                            f"{TOLERANCE:g}) on {CHECK_SAMPLES} sample inputs, so nothing was written")
        card["sha256"] = file_sha256(file)
        atomic_write_json(folder / "model_card.json", card)
        atomic_write_text(folder / "model_card.md", card_markdown(card))

    write_folder(out, fill, [FILES[fmt], "model_card.json", "model_card.md"],
                 {"run": str(run.path.resolve()), "method": method, "seed": seed, "format": fmt})
    return card


def export_run(run_path, method: Optional[str] = None, seed: Optional[int] = None, fmt: str = "onnx", out=None,
               overwrite: bool = False) -> tuple[Path, dict]:
    """``mmhal export``: one trained network of the run folder ``run_path`` (``method``, default the run's
    recommendation; ``teacher`` for the teacher; ``seed``, default the method's best on validation) as ``fmt``
    (onnx or torchscript) into the folder ``out`` (default RUN/export/<method>-seed<seed>-<format>), checked
    against PyTorch. Returns (the folder written, the model card)."""
    if fmt not in FILES:
        raise UserError(f"the export format must be {' or '.join(FILES)}, got '{fmt}'")
    if fmt == "onnx":
        require_onnx()
    run = open_run(str(run_path))
    given = method
    method = choose_method(run, method)
    how = {"method": "--method" if given else "the run's recommendation: the single-network method with the "
                                              "best mean validation accuracy"}
    if method == "teacher":
        if seed is not None:
            raise UserError("the teacher is one network shared by every seed; drop --seed to export it")
    elif seed is not None:
        how["seed"] = "--seed"
    else:
        seed = best_seed(run, method)
        acc = run.results["results"][method]["val_accuracy"]["per_seed"][run.seeds.index(seed)]
        how["seed"] = f"the best validation accuracy among the method's seeds ({100 * acc:.2f} %; the first on ties)"
    name = f"{method}-{fmt}" if seed is None else f"{method}-seed{seed}-{fmt}"
    output = (plan_output(out_path(str(out)), "export", overwrite) if out else
              plan_output(run.path / "export" / name, "export", overwrite, default="made from the method's name"))
    select_on = method_config(run.config, method).train.select_on
    how["epoch"] = f"the epoch with the best {select_on.replace('_', ' ')} on the validation split"
    return output.path, export(run, method, seed, fmt, output, how)


def main(args) -> int:
    """``mmhal export``; see the module docstring."""
    folder, card = export_run(args.run, args.method, args.seed, args.format, args.out, args.overwrite)
    chk, seed = card["check"], card.get("seed")
    print(f"exported: {folder / FILES[args.format]} (method {card['method']}" + ("" if seed is None else f", seed {seed}") + ")")
    print(f"check: {chk['runtime']} gives PyTorch's logits on {chk['samples']} random inputs (batches of "
          f"{' and '.join(map(str, chk['batch_sizes']))}): max abs diff {chk['max_abs_diff']:.3g} <= {TOLERANCE:g}")
    print(f"model card: {folder / 'model_card.md'}")
    return 0
