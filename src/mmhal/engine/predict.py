"""``mmhal predict``: apply a finished run's trained networks to new data; one CSV row per sample.

    mmhal predict RUN --data new.npz                  # the recommended method, every seed's student
    mmhal predict RUN --data new.csv --method kd --seed 0 --out preds.csv

The method is ``--method`` or the run's recommendation (``results.json["recommendation"]["method"]``); an
ensemble (``mmh-ensemble``: its RAD and DAD students) sums its members' logits per seed, as the run's results
do; ``--method teacher`` applies the teacher (it needs every teacher modality). Without ``--seed`` the
networks of every seed are applied and their softmax probabilities averaged (the mean over seeds of
softmax(logits)); with ``--seed`` one seed's.

The input needs only the network's modalities (others are not read): a ``.npz`` file (``x.<modality>``
arrays; ``label``, ``split``, ``class_names`` optional), a manifest ``.csv`` (``x.<modality>`` image columns;
``label`` or ``bona_fide`` optional; only the needed images are decoded, to the size the run trained on), or
a dataset name (``hapt``; ``casia-surf``/``cefa`` with ``--root``). Every sample is predicted in input order,
whatever its split. The normalisation learnt on the run's train split is inside each network. Keys (columns)
that no field of the format reads are judged by the rule of ``mmhal run`` (``data.keys``; the run's
``data.ignore_keys`` apply), but each is a note on stderr, a lookalike of a read key (``labels``, ``Label``)
with its did-you-mean, never an error: predict uses none of them but for the accuracy of ``label``.

The CSV has, per sample: ``pred`` (class index), ``pred_name``, ``p_<class>`` for every class (9 significant
digits); for anti-spoofing runs (a ``pad`` block in results.json) also ``bona_fide_score`` (= P(bona fide)),
``threshold`` (the validation threshold of the run's PAD criterion: the chosen seed's, or with several seeds
the mean of theirs) and ``decision`` (``bona_fide`` iff score >= threshold, else ``attack``); and ``label``
when the input has labels (the accuracy then goes to stderr).

The CSV is written through a temporary file, then its record ``.NAME.mmhal-predict`` beside it (the command and
the file's SHA-256): an existing ``--out`` is replaced, with ``--overwrite``, only when it is an earlier
predict output unchanged since, and never a run's own file (``engine.outputs``, the rule of every writing
command).
"""
from __future__ import annotations

import copy
import csv
import io
import sys
import time
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator, Optional, Sequence

import numpy as np
import torch
from tqdm.auto import tqdm

from ..config import DataConfig
from ..data.base import DATASETS, SPLITS, input_kind, load_dataset
from ..errors import DataError, UserError
from ..models.network import NetworkBase
from ..utils import usable_cpus
from .artifacts import RunFolder, choose_method, load_network, method_members, model_files, open_run
from .device import resolve_device
from .outputs import out_path, plan_output, write_file
from .results import ensemble_scales

PROB_DIGITS = ".9g"  # float32 values written so that they read back exactly


# ----------------------------------------------------------------------------- the networks
@dataclass
class Networks:
    """The networks of one method, per seed: ``networks[i]`` are the members whose logits are summed for seed
    ``seeds[i]`` (one network, or an ensemble's members; the teacher's seed is None)."""

    method: str
    seeds: list[Optional[int]]
    networks: list[list[NetworkBase]]
    modalities: list[str]
    shapes: dict[str, tuple[int, ...]]  # per-sample shape of every modality the networks were built for
    class_names: list[str]
    # per seed, the factor of each member's logits: 1 for every member, but (1, w) for an ensemble whose run fitted
    # a weight w (distill.ensemble_weight=learned; results.ensemble_scales); None = all 1
    scales: Optional[list[tuple[float, ...]]] = None

    @torch.no_grad()
    def logits(self, inputs: dict[str, torch.Tensor], views: int = 1) -> torch.Tensor:
        """(seeds, B, K) float32 logits of one batch: per seed, the sum of its members' logits (each times its factor
        in ``scales``). With ``views`` > 1
        the batch holds B x ``views`` rows (a sample's views together: test clips x crops) and a member's logits
        of a sample are the log of its views' mean probabilities, as ``mmhal run`` scores them."""
        def one(net) -> torch.Tensor:
            z = net(inputs).logits.float()
            if views > 1:
                z = z.view(-1, views, z.shape[-1]).softmax(-1).mean(1).clamp_min(1e-30).log()
            return z

        scales = self.scales or [(1.0,) * len(members) for members in self.networks]
        return torch.stack([sum(c * one(net) for c, net in zip(sc, members))
                            for sc, members in zip(scales, self.networks)])

    def describe(self) -> str:
        if self.seeds == [None]:
            return f"method {self.method}"
        seeds = ", ".join(map(str, self.seeds))
        many = "; probabilities averaged over seeds" if len(self.seeds) > 1 else ""
        return f"method {self.method}, seed{'s' if len(self.seeds) > 1 else ''} {seeds}{many}"


def load_networks(run: RunFolder, method: str, seed: Optional[int] = None, device="cpu") -> Networks:
    """The saved networks of ``method`` (every seed, or ``seed``) in eval mode on ``device``; a UserError when a
    model file is missing or damaged, or when the members disagree on modalities or classes."""
    if method == "teacher" and seed is not None:
        raise UserError("the teacher is one network shared by every seed; drop --seed to use it")
    members = method_members(method)
    per_member = [model_files(run, m, seed) for m in members]
    seeds = [s for s, _ in per_member[0]]
    networks, first = [], None
    for i in range(len(seeds)):
        nets = []
        for files in per_member:
            net, ckpt = load_network(files[i][1])
            if first is None:
                first = ckpt
            elif list(ckpt["modalities"]) != list(first["modalities"]) or ckpt["class_names"] != first["class_names"]:
                raise UserError(f"the model file '{files[i][1]}' was trained on other modalities or classes than "
                                f"the other networks of '{method}'; the run folder is inconsistent")
            nets.append(net.to(device))
        networks.append(nets)
    assert first is not None
    mods = list(first["modalities"])
    scales = [ensemble_scales(run.results, method, s) for s in seeds]
    return Networks(method, seeds, networks, mods, {m: tuple(first["shapes"][m]) for m in mods},
                    list(first["class_names"]), scales)


# ----------------------------------------------------------------------------- the input
@dataclass
class Inputs:
    """The samples to predict, in input order: ``n`` of them, ``batches(batch_size, device)`` gives them as
    ``{modality: float32 tensor}`` batches; ``labels`` (class indices of the run's classes) when the input has
    usable ones; ``notes`` for the user; ``close`` stops any reader processes."""

    name: str
    n: int
    batches: Callable[[int, object], Iterator[dict[str, torch.Tensor]]]
    labels: Optional[np.ndarray] = None
    notes: list[str] = field(default_factory=list)
    close: Callable[[], None] = lambda: None
    views: int = 1  # rows per sample in a batch (action clips: test clips x crops)
    # each sample's split (train | val | test) where the input has one: a dataset by name (split as `mmhal run`
    # splits it), or a .npz file with a 'split' key; the CSV gets a split column and the accuracy is given per split
    split: Optional[np.ndarray] = None


def _missing_modality(source: str, modality: str, method: str, has: list[str], names: Sequence[str] = (),
                      fmt=None) -> UserError:
    """The error for an input without ``modality``; with ``names`` (the input's keys or columns, of the
    ``data.keys`` format ``fmt``) it names one that looks like ``x.<modality>`` (``X.weak``, ``x_weak``)."""
    from ..data import keys

    want = keys.MODALITY_PREFIX + modality
    close = next((n for n in names if fmt is not None and (keys.lookalike(n, fmt) or ([], ""))[0] == [want]), None)
    hint = f"; its {fmt.noun} '{close}' looks like '{want}': rename it" if close else ""
    return DataError(f"the input '{source}' has no modality '{modality}', which the {method} network needs "
                     f"(it has: {', '.join(has) or 'none'}{hint})")


def _check_labels(labels: np.ndarray, names: Optional[list[str]], class_names: list[str], source: str,
                  notes: list[str]) -> Optional[np.ndarray]:
    """``labels`` when they can be compared with predictions (the input's class names, if any, are the run's);
    otherwise None, with a note saying why. Values outside the run's classes are a DataError."""
    if names is not None and list(names) != list(class_names):
        notes.append(f"the input's class names ({', '.join(names)}) are not the run's ({', '.join(class_names)}), "
                     "so its labels are not compared with the predictions")
        return None
    if len(labels) and (labels.min() < 0 or labels.max() >= len(class_names)):
        bad = int(labels[(labels < 0) | (labels >= len(class_names))][0])
        raise DataError(f"the input '{source}' has the label {bad}, but the run's classes are "
                        f"0..{len(class_names) - 1}")
    return labels


def check_shapes(arrays_shapes: dict[str, tuple[int, ...]], nets: Networks, source: str) -> None:
    """A DataError when a modality's per-sample shape is not the one the networks were trained on."""
    for m, s in arrays_shapes.items():
        if tuple(s) != tuple(nets.shapes[m]):
            raise DataError(f"modality '{m}' of '{source}' has per-sample shape {tuple(s)}, but the {nets.method} "
                            f"network was trained on {tuple(nets.shapes[m])}")


def _array_batches(arrays: dict[str, np.ndarray]) -> Callable[[int, object], Iterator[dict[str, torch.Tensor]]]:
    """Batches of in-memory float32 arrays (row slices, in order)."""
    n = len(next(iter(arrays.values())))

    def batches(batch_size: int, device) -> Iterator[dict[str, torch.Tensor]]:
        for i in range(0, n, batch_size):
            yield {m: torch.from_numpy(a[i:i + batch_size]).to(device) for m, a in arrays.items()}
    return batches


def read_npz_inputs(path: Path, nets: Networks, ignore: Sequence[str] = ()) -> Inputs:
    """The ``x.<modality>`` arrays the networks need from the ``.npz`` file at ``path`` (other arrays are not
    read), and its ``label`` when present. Nothing is unpickled. Keys no format field reads are judged as
    ``mmhal run`` judges them (``data.npz.check_keys``; ``ignore``: the run's ``data.ignore_keys``), but every
    one, a lookalike of a read key (with its did-you-mean) included, is a note rather than an error."""
    from ..data import npz

    npz.check_npz_file(path)  # a folder, a FIFO, text, a pickle: said as such
    try:
        archive = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError, zipfile.BadZipFile):
        raise DataError(f"data file '{path}' is a damaged or truncated zip archive, not a readable .npz file") from None
    if not isinstance(archive, np.lib.npyio.NpzFile):
        raise DataError(f"data file '{path}' holds a single array, not an .npz archive of named arrays")

    def get(key: str) -> np.ndarray:
        try:
            return archive[key]
        except ValueError:
            raise DataError(f"key '{key}' in '{path}' holds pickled Python objects; store plain numeric or string "
                            "arrays") from None
        except (OSError, EOFError, zipfile.BadZipFile) as exc:
            raise DataError(f"key '{key}' in '{path}' cannot be read ({exc})") from None

    notes: list[str] = []
    with archive:
        keys = archive.files
        layout = {k: npz.array_layout(archive, k) for k in keys}
        first = layout.get(npz.MODALITY_PREFIX + nets.modalities[0])
        npz.check_keys(layout, first[0][0] if first and first[0] else None, str(path), ignore, {}, notes,
                       refuse=False)
        has = [k[len(npz.MODALITY_PREFIX):] for k in keys if k.startswith(npz.MODALITY_PREFIX)]
        for m in nets.modalities:
            if npz.MODALITY_PREFIX + m not in keys:
                raise _missing_modality(str(path), m, nets.method, has, keys, npz.keys.NPZ)
        raw = {m: get(npz.MODALITY_PREFIX + m) for m in nets.modalities}
        label = get("label") if "label" in keys else None
        names = npz._as_strings(get("class_names"), "class_names").tolist() if "class_names" in keys else None
        split = npz._as_strings(get("split"), "split") if "split" in keys else None
    counts = {m: (a.shape[0] if a.ndim else 0) for m, a in raw.items()}
    n = counts[nets.modalities[0]]
    for m, c in counts.items():
        if c != n:
            raise DataError(f"modality '{m}' in '{path}' has {c} samples but '{nets.modalities[0]}' has {n}")
    if n == 0:
        raise DataError(f"data file '{path}' holds no samples")
    check_shapes({m: a.shape[1:] for m, a in raw.items()}, nets, str(path))
    arrays = {m: np.ascontiguousarray(npz._read_modality(m, a, n)) for m, a in raw.items()}
    labels = None
    if label is not None:
        labels = npz._read_labels(label)
        if len(labels) != n:
            raise DataError(f"'label' in '{path}' has {len(labels)} entries but the modalities have {n} samples")
        labels = _check_labels(labels, names, nets.class_names, str(path), notes)
    if split is not None and (len(split) != n or not set(np.unique(split).tolist()) <= set(SPLITS)):
        notes.append(f"the 'split' key of '{path}' is not one of train, val, test per sample, so it is not used")
        split = None
    return Inputs(path.stem, n, _array_batches(arrays), labels, notes, split=split)


def read_manifest_inputs(path: Path, nets: Networks, workers: int, data_cfg: Optional[DataConfig] = None) -> Inputs:
    """The image files of the networks' modalities listed in the manifest at ``path`` (other columns are not
    read), decoded on demand to each modality's channels and size as the run trained on them; its ``label``
    or ``bona_fide`` column when present. Columns no manifest field reads are judged as ``mmhal run`` judges
    them (``data.manifest.check_columns``, with ``data_cfg.ignore_keys``), each a note (lookalikes too)."""
    from ..data import keys, manifest
    from ..data.files import FileData

    header, rows = manifest._read_rows(path)
    notes: list[str] = []
    manifest.check_columns(header, rows, path, data_cfg.ignore_keys if data_cfg else (), {}, notes, refuse=False)
    col = {name: j for j, name in enumerate(header)}
    here = f"'{path.name}'"
    has = [c[len(manifest.MODALITY_PREFIX):] for c in header if c.startswith(manifest.MODALITY_PREFIX)]
    clips = all(len(nets.shapes[m]) == 4 for m in nets.modalities)  # action clips: one frame folder per cell
    for m in nets.modalities:
        if manifest.MODALITY_PREFIX + m not in col:
            raise _missing_modality(str(path), m, nets.method, has, header, keys.MANIFEST)
        if clips:
            continue
        if len(nets.shapes[m]) != 3 or nets.shapes[m][0] not in (1, 3):
            raise DataError(f"the {nets.method} network's modality '{m}' is a {input_kind(nets.shapes[m])} of shape "
                            f"{nets.shapes[m]}, not an image, so it cannot be read from the image files of a manifest")
    sizes = {nets.shapes[m][1:] for m in nets.modalities}
    assert clips or len(sizes) == 1, "every image modality of a run has one size"
    key = "label" if "label" in col else "bona_fide" if "bona_fide" in col else None
    needed = [manifest.MODALITY_PREFIX + m for m in nets.modalities] + ([key] if key else [])
    labels = np.zeros(len(rows), dtype=np.int64)
    for i, (line, row) in enumerate(rows):
        if len(row) != len(header):
            raise DataError(f"line {line} of {here} has {len(row)} cells but the header has {len(header)} columns")
        for c in needed:
            if not row[col[c]]:
                raise DataError(f"line {line} of {here} has an empty '{c}' cell")
        if key is not None:
            text = row[col[key]]
            try:
                labels[i] = int(text)
            except ValueError:
                what = "1 (bona fide) or 0 (attack)" if key == "bona_fide" else "an integer class index"
                raise DataError(f"line {line} of {here} has '{key}' = '{text}', which is not {what}") from None
            if key == "bona_fide" and labels[i] not in (0, 1):
                raise DataError(f"line {line} of {here} has 'bona_fide' = '{text}'; it must be 1 (bona fide) or 0 "
                                "(attack)")
    root = str(path.parent)
    files = {m: [row[col[manifest.MODALITY_PREFIX + m]] for _, row in rows] for m in nets.modalities}
    where = lambda m, i: f"line {rows[i][0]} of {here}, column 'x.{m}'"  # noqa: E731
    if not clips:
        manifest.check_files_exist(files, root, where)
    checked = None
    if key is not None:
        pad_names = ["attack", "bona_fide"] if key == "bona_fide" else None
        checked = _check_labels(labels, pad_names, nets.class_names, str(path), notes)
    if clips:
        data = _clip_inputs(path, files, root, rows, labels, nets, data_cfg or DataConfig(), where)
        return _sample_inputs(path.stem, data, nets, workers, checked, notes)
    data = FileData(name=path.stem, files={m: np.array(p, dtype=str) for m, p in files.items()}, labels=labels,
                    split=np.full(len(rows), "test"), class_names=list(nets.class_names),
                    channels={m: int(nets.shapes[m][0]) for m in nets.modalities}, image_size=tuple(sizes.pop()),
                    root=root, listing=path.name, lines=np.array([line for line, _ in rows], dtype=np.int64))
    return _sample_inputs(path.stem, data, nets, workers, checked, notes)


def _sample_inputs(name: str, data, nets: Networks, workers: int, labels, notes) -> Inputs:
    """Inputs read sample by sample from a dataset on disk (``FileData``, or ``ClipData``: every test view of
    each clip, scored as ``mmhal run`` scores its test split), by ``workers`` DataLoader processes."""
    from .samples import SampleSplit

    n = len(data.labels)
    splits: list = []
    clips = getattr(data, "is_clips", False)
    mode = "test" if clips else "val"

    def batches(batch_size: int, device) -> Iterator[dict[str, torch.Tensor]]:
        split = SampleSplit(data, np.arange(n), nets.modalities, device, workers if n > batch_size else 0, mode=mode)
        splits.append(split)
        yield from split.eval_batches(nets.modalities, 0, n, batch_size)

    def close() -> None:
        for s in splits:
            s.close()

    return Inputs(name, n, batches, labels, notes, close, views=data.views(mode) if clips else 1)


def _clip_inputs(path: Path, files: dict, root: str, rows: list, labels: np.ndarray, nets: Networks,
                 data_cfg: DataConfig, where):
    """A ``ClipData`` of the manifest's frame folders, decoded and clipped as the run's ``data_cfg`` says (its frame
    size, depth range and clip settings), after checking that its clips have the networks' shapes."""
    from ..data.frames import manifest_clip_data

    data = manifest_clip_data(data_cfg, path.stem, root, files, labels, np.full(len(rows), "test"), nets.class_names,
                              where, lambda i: f"the sample on line {rows[i][0]} of '{path.name}'")
    check_shapes({m: data.shapes[m] for m in nets.modalities}, nets, str(path))
    return data


def read_dataset_inputs(name: str, root: Optional[str], run: RunFolder, nets: Networks, workers: int) -> Inputs:
    """Every sample of a dataset known by name (whatever its split), loaded as ``mmhal run`` loads it: with the
    run's own data settings when it is the run's dataset, else the defaults; images at the run's size."""
    if name == run.config.data.name:
        cfg = copy.deepcopy(run.config.data)
        if root:
            cfg.path = root
    else:
        cfg = DataConfig(name=name, path=root)
    image = [m for m in nets.modalities if len(nets.shapes[m]) == 3]
    if image:
        cfg.image_size = list(nets.shapes[image[0]][1:])
    data = load_dataset(cfg)
    for m in nets.modalities:
        if m not in data.modalities:
            raise _missing_modality(name, m, nets.method, list(data.modalities))
    check_shapes({m: data.shapes[m] for m in nets.modalities}, nets, name)
    notes: list[str] = []
    labels = _check_labels(np.asarray(data.labels), list(data.class_names), nets.class_names, name, notes)
    if data.in_memory:
        arrays = {m: np.ascontiguousarray(data.modalities[m], dtype=np.float32) for m in nets.modalities}
        inputs = Inputs(name, len(data.labels), _array_batches(arrays), labels, notes)
    else:
        inputs = _sample_inputs(name, data, nets, workers, labels, notes)
    inputs.split = np.asarray(data.split).astype(str)  # as `mmhal run` splits the dataset
    return inputs


def open_inputs(spec: str, root: Optional[str], run: RunFolder, nets: Networks, workers: int = 0) -> Inputs:
    """The input named by ``--data`` (a ``.npz`` file, a manifest ``.csv`` or a dataset name), after checking
    that every modality the networks need is there with the per-sample shape they were trained on."""
    from ..data import casia_surf, cefa, hapt, manifest, npz  # noqa: F401  (register the built-in loaders)

    path = Path(spec).expanduser()
    if spec.endswith(".csv"):
        return read_manifest_inputs(path, nets, workers, run.config.data)
    if spec.endswith(".npz") or (spec not in DATASETS and ("/" in spec or "." in spec)):
        return read_npz_inputs(path, nets, run.config.data.ignore_keys)
    return read_dataset_inputs(spec, root, run, nets, workers)


# ----------------------------------------------------------------------------- prediction
def predict_logits(nets: Networks, inputs: Inputs, batch_size: int = 1024, device="cpu",
                   progress: bool = False) -> np.ndarray:
    """(seeds, N, K) float32 logits of every sample, in input order (per seed, summed over an ensemble's members)."""
    out = np.empty((len(nets.seeds), inputs.n, len(nets.class_names)), dtype=np.float32)
    bar = tqdm(total=inputs.n, desc=f"predict {nets.method}", unit="sample", file=sys.stderr, leave=False,
               disable=not progress, dynamic_ncols=True)
    i = 0
    try:
        for batch in inputs.batches(batch_size, device):
            z = nets.logits(batch, inputs.views).cpu().numpy()
            out[:, i:i + z.shape[1]] = z
            i += z.shape[1]
            bar.update(z.shape[1])
    finally:
        bar.close()
        inputs.close()
    assert i == inputs.n, "every sample is predicted once"
    return out


def probabilities(logits: np.ndarray) -> np.ndarray:
    """(N, K) mean over seeds of softmax(logits) (computed in float64, the row maximum subtracted first)."""
    z = logits.astype(np.float64)
    e = np.exp(z - z.max(axis=-1, keepdims=True))
    return (e / e.sum(axis=-1, keepdims=True)).mean(axis=0)


@dataclass
class Threshold:
    """The PAD decision threshold on P(bona fide): ``value`` (None when a seed's is not finite) and how it was
    obtained (``rule``, for the user), from results.json."""

    value: Optional[float]
    rule: str
    scoring: str = "sample"


def pad_threshold(run: RunFolder, nets: Networks) -> Optional[Threshold]:
    """The run's validation threshold of ``nets.method`` for the seeds used (their mean for several seeds); None
    for a run without PAD figures (not anti-spoofing data)."""
    entry = run.results.get("results", {}).get(nets.method, {})
    pad = entry.get("pad") if isinstance(entry, dict) else None
    if not pad or nets.class_names != ["attack", "bona_fide"]:
        return None
    per_seed = (pad.get("threshold") or {}).get("per_seed") or []
    if len(per_seed) != len(run.seeds):
        raise UserError(f"'{run.path / 'results.json'}' lists {len(run.seeds)} seeds but {len(per_seed)} PAD "
                        f"thresholds of '{nets.method}'")
    if nets.seeds == [None]:  # the teacher: one network, the same threshold on every seed
        values = per_seed[:1]
    else:
        values = [per_seed[run.seeds.index(s)] for s in nets.seeds]
    criterion = pad.get("criterion", "eer")
    scoring = str(pad.get("scoring", "sample"))
    if any(v is None for v in values):
        return Threshold(None, f"the run's threshold ({criterion}) is not finite for a seed used", scoring)
    if len(values) == 1:
        rule = f"the validation threshold of criterion '{criterion}'"
    else:
        rule = f"the mean of the {len(values)} seeds' validation thresholds of criterion '{criterion}'"
    return Threshold(float(np.mean(values)), rule, scoring)


def predictions_csv(nets: Networks, probs: np.ndarray, labels: Optional[np.ndarray] = None,
                    threshold: Optional[Threshold] = None, split: Optional[np.ndarray] = None) -> str:
    """The CSV text: ``pred``, ``pred_name``, ``p_<class>`` per class, the PAD columns ``bona_fide_score``,
    ``threshold``, ``decision`` (with a finite ``threshold``), ``label`` (with ``labels``) and ``split`` (with
    ``split``)."""
    names = nets.class_names
    pred = probs.argmax(axis=1)
    header = ["pred", "pred_name", *[f"p_{c}" for c in names]]
    columns: list = [pred.tolist(), [names[k] for k in pred]]
    columns += [[format(v, PROB_DIGITS) for v in probs[:, k].tolist()] for k in range(len(names))]
    if threshold is not None:
        score = probs[:, names.index("bona_fide")]
        header.append("bona_fide_score")
        columns.append([format(v, PROB_DIGITS) for v in score.tolist()])
        if threshold.value is not None:
            header += ["threshold", "decision"]
            columns += [[format(threshold.value, PROB_DIGITS)] * len(score),
                        np.where(score >= threshold.value, "bona_fide", "attack").tolist()]
    if labels is not None:
        header.append("label")
        columns.append(labels.tolist())
    if split is not None:
        header.append("split")
        columns.append([str(v) for v in split.tolist()])
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(header)
    w.writerows(zip(*columns))
    return buf.getvalue()


def default_out(run: RunFolder, method: str, spec: str) -> Path:
    """``RUN/predictions/<method>-<data stem>.csv``."""
    stem = Path(spec).stem if spec.endswith((".npz", ".csv")) else Path(spec).name
    return run.path / "predictions" / f"{method}-{stem}.csv"


@dataclass
class Prediction:
    """What ``predict_run`` wrote and found: the CSV's ``path``, ``n`` samples, the networks used (``networks``,
    in words), the ``accuracy`` on the input's labels (None without them), the PAD ``threshold`` (None for other
    data), ``notes`` for the user and ``seconds``."""

    path: Path
    method: str
    n: int
    networks: str
    accuracy: Optional[float]
    threshold: Optional[Threshold]
    notes: list[str]
    seconds: float
    # {split: (accuracy, samples)} where the input has splits and labels: only 'test' is unseen by the run's training
    # and selection
    split_accuracy: dict = field(default_factory=dict)

    def lines(self) -> list[tuple[str, str]]:
        """(stream, line) pairs of what ``mmhal predict`` prints: notes on stderr, the CSV's path on stdout."""
        out = [("stderr", f"note: {note}") for note in self.notes]
        t = self.threshold
        if t is not None:
            if t.value is None:
                out.append(("stderr", f"note: {t.rule}, so the CSV has no threshold and decision columns"))
            else:
                out.append(("stderr", f"decision: bona_fide when P(bona fide) >= {t.value:.6g}, {t.rule}"))
            if t.scoring == "video":
                out.append(("stderr", "note: the run scored videos (the mean score of a video's frames); each row here "
                                      "is scored alone, so average a video's bona_fide_score before comparing it with "
                                      "the threshold"))
        if self.accuracy is not None:
            line = f"accuracy: {self.accuracy:.4f} on {self.n} labelled samples ({self.networks})"
            if self.split_accuracy:
                parts = ", ".join(f"{k} {a:.4f} ({n})" for k, (a, n) in self.split_accuracy.items())
                line += (f"; by split: {parts} (the run trained on train and chose its epochs on val: only test "
                         "is unseen)")
            out.append(("stderr", line))
        out.append(("stdout", f"predictions: {self.path} ({self.n} samples, {self.networks}; {self.seconds:.2f} s)"))
        return out


def predict_run(run_path, data: str, method: Optional[str] = None, seed: Optional[int] = None, out=None,
                root: Optional[str] = None, batch_size: int = 1024, device: str = "cpu", overwrite: bool = False,
                progress: bool = True) -> Prediction:
    """``mmhal predict``: apply the students of ``method`` (default: the run's recommendation) of the run folder
    ``run_path`` to ``data`` (a .npz file, a manifest .csv or a dataset name, read from ``root`` where it needs
    one), one seed's (``seed``) or every seed's averaged, and write one CSV row per sample to ``out`` (default:
    RUN/predictions/<method>-<data>.csv)."""
    if batch_size < 1:
        raise UserError("--batch-size must be at least 1")
    run = open_run(str(run_path))
    method = choose_method(run, method, ensembles=True)
    dev = resolve_device(device)
    if out:
        output = plan_output(out_path(str(out)), "predict", overwrite)
    else:
        output = plan_output(default_out(run, method, data), "predict", overwrite,
                             default="made from the method and the data's name")
    nets = load_networks(run, method, seed, dev)
    workers = min(4, usable_cpus())
    inputs = open_inputs(data, root, run, nets, workers)
    t0 = time.perf_counter()
    logits = predict_logits(nets, inputs, batch_size, dev, progress=progress)
    probs = probabilities(logits)
    threshold = pad_threshold(run, nets)
    write_file(output, predictions_csv(nets, probs, inputs.labels, threshold, inputs.split))
    acc = None if inputs.labels is None else float((probs.argmax(axis=1) == inputs.labels).mean())
    by_split = {}
    if inputs.labels is not None and inputs.split is not None:
        right = probs.argmax(axis=1) == inputs.labels
        by_split = {k: (float(right[inputs.split == k].mean()), int((inputs.split == k).sum()))
                    for k in SPLITS if (inputs.split == k).any()}
    return Prediction(output.path, method, inputs.n, nets.describe(), acc, threshold, list(inputs.notes),
                      time.perf_counter() - t0, by_split)


def main(args) -> int:
    """``mmhal predict``; see the module docstring."""
    done = predict_run(args.run, args.data, args.method, args.seed, args.out, args.root, args.batch_size, args.device,
                       args.overwrite, progress=not args.no_progress)
    for stream, line in done.lines():
        print(line, file=sys.stderr if stream == "stderr" else sys.stdout)
    return 0
