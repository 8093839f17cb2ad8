"""The names in a user's own data file that mmhal does not read: one rule for every bring-your-own format.

A ``.npz`` file's keys and a manifest's columns are chosen by the user; a name mmhal does not read would
otherwise change what is evaluated without a word (a ``splits`` key beside no ``split``: mmhal makes a split
of its own; the real labels under ``target`` beside a wrong ``label``). So every name a loader does not read
gets one of three answers (``check_unread``):

* it **looks like a name mmhal reads**: a DataError in one sentence with a did-you-mean. A name looks like
  one when, lower-cased with spaces and punctuation made ``_``, it is a read name (``Split``, ``class-names``,
  ``classnames``) or a known alias of one (``labels``, ``y``, ``target``, ``splits``, ``fold``, ``groups``,
  ``subject``; ``ALIASES``); when it is a close spelling of one (``lable``, ``group2``; difflib, names of 4
  or more characters only, so that a short unrelated name is not caught); when it spells a modality without
  the exact ``x.`` prefix (``X.rgb``, ``x_rgb``, ``x-rgb``); when its values look like a modality's (a
  ``.npz`` array of numbers with one row per sample and 2 or more dimensions per sample; a manifest column
  of image or video files, or of folders), or when it holds one value per sample and one of its words is a
  read name or alias of a per-sample field (``true_label``, ``subject_id``, ``video_name``);
* it is listed in ``data.ignore_keys`` (kept in the file on purpose): read by no one and not warned about;
* any other name (``timestamp``, ``notes``): ignored, and one warning (``info["warnings"]``, which ``mmhal
  run`` prints and records in results.json) names every such name of the file.

Every name that is not read, listed in ``data.ignore_keys`` or not, is recorded in ``info`` (``ignored_keys``
for a ``.npz`` file, ``ignored_columns`` for a manifest). A name in ``data.ignore_keys`` that the format
reads is a DataError: it cannot be both read and ignored. ``mmhal predict`` applies the same rule to its
input with the run's ``data.ignore_keys`` but refuses nothing (``refuse=False``): a lookalike is a note with
its did-you-mean, since predict reads none of these names but ``label`` (for an accuracy it then leaves out).
"""
from __future__ import annotations

import difflib
import re
from dataclasses import dataclass, field
from typing import Callable, Optional, Sequence

from ..errors import DataError
from .base import modality_name_problem, suggest_modality_name

MODALITY_PREFIX = "x."

#: The fields a format can read, each with other names users store it under (in normal form: lower case, words
#: joined by ``_``). A name may stand for more than one field (``classes``: per-sample labels or per-class names).
ALIASES: dict[str, tuple[str, ...]] = {
    "label": ("y", "labels", "target", "targets", "class", "class_id", "class_idx", "class_index", "label_id",
              "label_idx", "label_index", "gt", "ground_truth", "y_true", "category", "category_id", "cls",
              "classes", "categories"),
    "split": ("splits", "subset", "subsets", "partition", "partitions", "fold", "folds", "set", "sets", "phase",
              "is_train", "is_val", "is_test", "train_mask", "val_mask", "test_mask", "train_test_split"),
    "group": ("groups", "subject", "subjects", "subject_id", "subj", "person", "person_id", "participant",
              "participant_id", "speaker", "speaker_id", "patient", "patient_id", "user_id", "identity",
              "identities", "session", "sessions", "session_id"),
    "class_names": ("names", "label_names", "labels_names", "target_names", "category_names", "classes",
                    "categories", "class_name", "label_name"),
    "bona_fide": ("live", "is_live", "liveness", "real", "is_real", "genuine", "is_genuine", "spoof", "is_spoof",
                  "attack", "is_attack", "fake", "is_fake"),
    "species": ("attack_type", "attack_types", "attack", "spoof_type", "pai", "pai_species", "pa_type",
                "pa_species", "attack_species"),
    "video": ("videos", "video_id", "video_name", "clip", "clip_id", "vid"),
}
#: Fields read per sample: a name holding one value per sample with one of their words in it looks like them.
PER_SAMPLE_FIELDS = ("label", "split", "group", "bona_fide", "species", "video")
MIN_FUZZY = 4  # names shorter than this are matched exactly (after normalising) or as aliases, never by spelling
FUZZY_CUTOFF = 0.8  # difflib ratio: 'lable' ~ 'label' (0.8), 'splt' ~ 'split' (0.89); 'level' ~ 'label' is 0.6
SEPARATOR = re.compile(r"[^0-9a-z]+")


@dataclass(frozen=True)
class Format:
    """The names one format reads. ``fields`` maps each field of ``ALIASES`` the format can hold to the name it
    reads it under (a ``.npz`` file keeps a video id as its ``group``); ``read`` are the names it reads, each
    with what it holds, for messages; ``noun`` is "key" or "column"; ``kind`` names the format in sentences."""

    kind: str
    noun: str
    read: dict[str, str]
    fields: dict[str, str] = field(default_factory=dict)

    def listing(self) -> str:
        """E.g. "label, x.<modality>, split, group and class_names"."""
        names = list(self.read)
        names.insert(1, MODALITY_PREFIX + "<modality>")
        return ", ".join(names[:-1]) + " and " + names[-1]


NPZ = Format(
    kind=".npz file", noun="key",
    read={"label": "the class index per sample", "split": "train, val or test per sample",
          "group": "the subject, video or session per sample", "class_names": "the name of each class"},
    fields={"label": "label", "split": "split", "group": "group", "class_names": "class_names", "video": "group",
            "bona_fide": "label"},
)
MANIFEST = Format(
    kind="manifest", noun="column",
    read={"label": "the class index per row", "bona_fide": "1 (bona fide) or 0 (attack) per row",
          "split": "train, val or test per row", "group": "the subject, video or session per row",
          "video": "the scoring unit per row", "species": "the attack type per row",
          "class_name": "the name of the row's class"},
    fields={"label": "label", "split": "split", "group": "group", "class_names": "class_name", "video": "video",
            "bona_fide": "bona_fide", "species": "species"},
)


def normal(name: str) -> str:
    """``name`` lower-cased, with every run of characters other than letters and digits made one ``_``."""
    return SEPARATOR.sub("_", name.lower()).strip("_")


def _modality_suggestion(name: str) -> str:
    """The ``x.<name>`` key a modality stored under ``name`` (no prefix) should have."""
    base = name if name.isidentifier() else (normal(name) or "m")
    if not base.isidentifier():
        base = "m_" + base
    return MODALITY_PREFIX + (base if modality_name_problem(base) is None else suggest_modality_name(base))


def lookalike(name: str, fmt: Format, per_sample: bool = False, modality_like: Optional[str] = None
              ) -> Optional[tuple[list[str], str]]:
    """The names ``fmt`` reads that ``name`` (not itself read) looks like, with why (a phrase), or None; see the
    module docstring. ``per_sample``: the name holds one value per sample; ``modality_like``: why its values
    look like a modality's (e.g. "it holds a (3, 32, 32) array per sample"), or None.
    """
    key = normal(name)
    compact = key.replace("_", "")
    if name[:1] in "xX" and len(name) > 2 and not name[1].isalnum() and not name.startswith(MODALITY_PREFIX):
        return [_modality_suggestion(name[2:])], f"a modality {fmt.noun} without the exact prefix 'x.'"
    for read in fmt.read:
        if key == read or compact == read.replace("_", ""):
            return [read], "the same name but for case or punctuation"
    if modality_like:
        return [_modality_suggestion(name)], f"{modality_like}, like a modality"
    fields = [f for f, names in ALIASES.items() if f in fmt.fields and (key in (f, *names) or compact in names)]
    if fields:
        targets = _unique(fmt.fields[f] for f in fields)
        return targets, f"a common name for {'it' if len(targets) == 1 else 'either'}"
    if len(key) >= MIN_FUZZY:
        close = difflib.get_close_matches(key, list(fmt.read), n=1, cutoff=FUZZY_CUTOFF)
        if close:
            return close, "a close spelling"
    if per_sample:
        words = key.split("_")
        hits = [(f, w) for f in PER_SAMPLE_FIELDS if f in fmt.fields for w in words
                if f in (w, w[:-1] if w.endswith("s") else w) or (len(w) >= MIN_FUZZY and w in ALIASES[f])]
        if hits:
            return _unique(fmt.fields[f] for f, _ in hits), f"one value per sample, with '{hits[0][1]}' in its name"
    return None


def _unique(names) -> list[str]:
    out: list[str] = []
    for n in names:
        if n not in out:
            out.append(n)
    return out


def _quoted(names: Sequence[str]) -> str:
    q = [f"'{n}'" for n in names]
    return q[0] if len(q) == 1 else ", ".join(q[:-1]) + " or " + q[-1]


def check_unread(
    names: Sequence[str], fmt: Format, source: str, ignore: Sequence[str], info: dict, warnings: list[str],
    per_sample: Callable[[str], bool] = lambda name: False,
    modality_like: Callable[[str], Optional[str]] = lambda name: None,
    present: Sequence[str] = (), refuse: bool = True,
) -> None:
    """Apply the rule of the module docstring to ``names``, the names of ``source`` that ``fmt`` does not read.

    A lookalike is a DataError in one sentence; the others are recorded in ``info`` and, unless listed in
    ``ignore`` (``data.ignore_keys``), named by one sentence appended to ``warnings``. ``per_sample(name)``
    and ``modality_like(name)`` describe a name's values (see ``lookalike``); ``present`` are the read names
    the file has (a lookalike of one of them is a second copy of it, not a misspelt field). ``refuse=False``
    (``mmhal predict``, which evaluates nothing but an accuracy from these fields and takes no settings): a
    lookalike is a sentence in ``warnings`` with the same did-you-mean instead of an error.
    """
    for name in ignore if refuse else ():
        if name in fmt.read:
            raise DataError(
                f"data.ignore_keys lists '{name}', which mmhal reads from a {fmt.kind} ({fmt.read[name]}); "
                "remove it from the list"
            )
    unread = sorted(names)
    told: list[str] = []
    for name in unread:
        if name in ignore:
            continue
        match = lookalike(name, fmt, per_sample(name), modality_like(name))
        if match is None:
            told.append(name)
            continue
        targets, why = match
        if len(targets) == 1 and targets[0] in present:
            fix = f"keep the data you mean under '{targets[0]}' (the file has both)"
        else:  # a name for several fields: rename it to one the file does not have yet (both when it has both)
            fix = f"rename it to {_quoted([t for t in targets if t not in present] or targets)}"
        what = f"{fmt.noun} '{name}' of '{source}' is not read by mmhal but looks like {_quoted(targets)} ({why})"
        if refuse:
            raise DataError(
                f"{what}, so mmhal would go on without it: {fix}, or set data.ignore_keys=[{name}] to keep it unread"
            )
        warnings.append(f"{what}, so it is ignored: {fix} to have it read")
    if unread:
        info[f"ignored_{fmt.noun}s"] = unread
    if told:
        they, s = ("they", "s") if len(told) > 1 else ("it", "")
        them = "them" if len(told) > 1 else "it"
        keep = f"; list {them} in data.ignore_keys to keep {them} without this warning" if refuse else ""
        warnings.append(
            f"mmhal does not read the {fmt.noun}{s} {', '.join(repr(n) for n in told)} of '{source}' (a {fmt.kind} "
            f"is read from {fmt.listing()}), so {they} {'are' if s else 'is'} ignored{keep}"
        )
