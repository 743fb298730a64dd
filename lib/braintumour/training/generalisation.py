"""Generalisation to collections a model never saw: each collection's audit against the Kaggle set,
its group-disjoint parts, the pool of images a run draws from, and the recipe meant to generalise.

- **Groups**: a patient or subject where the file names tell (BraTS, OpenNeuro), joined with
  near-duplicate clusters (the leakage audit's perceptual hash and threshold), so copies and slices of
  one person never straddle two parts.
- **Fresh images**: those whose group holds no Kaggle file or near-copy of one (for Br35H most of `no/`).
- **Parts** of each collection's fresh groups, drawn per label: `train` (every image), `tune` and `test`
  (one image per near-duplicate cluster: every slice of a patient, no copy twice); `all`, the same over
  every fresh group, for models that never trained on the collection.
- **Leave one collection out**: a run trains on the Kaggle set and the `train` parts of every other
  collection, and is scored on all of the held-out one. The shipped model trains on every `train` part
  and is scored on every `test` part.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from braintumour.datasets import audit
from braintumour.datasets.images import box_masks
from braintumour.datasets.kaggle import Dataset, load_images, training_masks
from braintumour.datasets.source import TUMOUR
from braintumour.datasets.splits import Split, class_weights
from braintumour.training.recipes import TrainConfig, custom_cnn_config
from braintumour.training.runs import RunResult, train_or_load

PART_FRACTIONS = {"train": 0.5, "tune": 0.15, "test": 0.35}
PART_SEED = 2020  # notebook 08's, so Br35H's tumour parts are the ones it reported on
# Each external collection's training rows are repeated until it has at least this share of the Kaggle
# training rows: OpenNeuro's few subjects would otherwise be a handful of images per epoch.
MIN_SHARE = 0.1
# The recipe meant to generalise (docs/experiments.md has its screen): notebook 03's, with the
# collections' images as partial labels, acquisition randomisation and the brain-only view.
GENERALISED = {"partial_label_weight": 1.0, "randomise": {"skull_strip": 0.5}}


def group_pairs(groups: pd.Series) -> pd.DataFrame:
    """Pairs (i, j) linking consecutive members of each named group (empty names link nothing)."""
    codes = groups.to_numpy()
    pairs = [(idx[k], idx[k + 1]) for g, idx in pd.Series(np.arange(len(codes))).groupby(codes).groups.items()
             if g for k in range(len(idx) - 1)]
    return pd.DataFrame(pairs, columns=["i", "j"], dtype=int)


def collection_groups(manifest: pd.DataFrame, hashes: np.ndarray, threshold: int = audit.NEAR_DUPLICATE_BITS
                      ) -> tuple[np.ndarray, np.ndarray]:
    """(clusters, groups): near-duplicate clusters, and those joined with the named groups (connected
    components of both)."""
    pairs = audit.near_duplicate_pairs(hashes, threshold)[["i", "j"]]
    clusters = audit.duplicate_clusters(len(manifest), pairs)
    if "group" in manifest:
        pairs = pd.concat([pairs, group_pairs(manifest.group)], ignore_index=True)
    return clusters, audit.duplicate_clusters(len(manifest), pairs)


def audit_collection(collection: Dataset, hashes: np.ndarray, kaggle: Dataset, kaggle_hashes: np.ndarray,
                     threshold: int = audit.NEAR_DUPLICATE_BITS) -> pd.DataFrame:
    """One row per image: label, near-duplicate cluster and group, is it a Kaggle file, its nearest
    Kaggle image and distance, is that a near-copy, and does its group hold any Kaggle file or
    near-copy (`kaggle_group`)."""
    m = collection.manifest
    clusters, groups = collection_groups(m, hashes, threshold)
    both = np.concatenate([hashes, kaggle_hashes])
    n = len(hashes)
    dist, nearest = audit.nearest_neighbours(both, np.arange(n), np.arange(n, len(both)))
    frame = pd.DataFrame({"path": m.path.to_numpy(), "look": m.split.to_numpy(), "label": m.label.to_numpy(),
                          "kaggle_file": m.sha256.isin(kaggle.manifest.sha256).to_numpy(),
                          "nearest_kaggle_class": kaggle.manifest.class_name.iloc[nearest - n].to_numpy(),
                          "kaggle_distance": dist, "cluster": clusters, "group": groups})
    frame["near_kaggle"] = frame.kaggle_file | (frame.kaggle_distance <= threshold)
    frame["kaggle_group"] = frame.groupby("group").near_kaggle.transform("any")
    return frame


def audit_summary(frame: pd.DataFrame) -> dict:
    """Per label (`tumour`, `notumor`): files, Kaggle files, near-copies, distinct images (clusters),
    groups, and the fresh groups and images (one per cluster) with no Kaggle copy."""
    out = {}
    for label, f in frame.groupby("label"):
        out["tumour" if label == TUMOUR else "notumor"] = {
            "files": len(f), "kaggle_files": int(f.kaggle_file.sum()),
            "near_copies_of_kaggle": int(f.near_kaggle.sum()),
            "clusters": int(f.cluster.nunique()), "groups": int(f.group.nunique()),
            "fresh_groups": int(f[~f.kaggle_group].group.nunique()),
            "fresh_images": int(f[~f.kaggle_group].cluster.nunique())}
    return out


def collection_parts(frame: pd.DataFrame, seed: int = PART_SEED, limit: int | None = None) -> dict[str, np.ndarray]:
    """Row indices of the parts (module docstring) of one collection's fresh groups, drawn per label
    with a generator started afresh for each, in `PART_FRACTIONS`; `limit` keeps at most that many
    of each part, evenly spaced (the smoke profile)."""
    fresh = frame[~frame.kaggle_group]
    parts: dict[str, list[np.ndarray]] = {k: [] for k in ("train", "tune", "test", "all")}
    for _, f in fresh.groupby("label", sort=False):
        groups = np.random.default_rng(seed).permutation(np.sort(f.group.unique()))
        cut = np.cumsum([round(PART_FRACTIONS[k] * len(groups)) for k in ("train", "tune")])
        part_of = dict.fromkeys(groups[: cut[0]], "train") | dict.fromkeys(groups[cut[0] : cut[1]], "tune")
        part = f.group.map(lambda g, p=part_of: p.get(g, "test"))
        first = ~f.cluster.duplicated()
        parts["train"].append(f.index[part == "train"].to_numpy())
        for name in ("tune", "test"):
            parts[name].append(f.index[(part == name) & first].to_numpy())
        parts["all"].append(f.index[first].to_numpy())
    return {k: _spread(np.sort(np.concatenate(v)), limit) if v else np.array([], dtype=int) for k, v in parts.items()}


def _spread(rows: np.ndarray, limit: int | None) -> np.ndarray:
    """At most `limit` of `rows`, evenly spaced, so a small subset still spans a collection's looks."""
    if limit is None or len(rows) <= limit:
        return rows
    return rows[np.linspace(0, len(rows) - 1, limit).astype(int)]


@dataclass
class Collection:
    """One collection ready for a run: its manifest, decoded images, audit rows and parts."""

    dataset: Dataset
    images: np.ndarray
    frame: pd.DataFrame
    parts: dict[str, np.ndarray]

    def rows(self, part: str) -> dict[str, np.ndarray]:
        """Images, labels, groups (prefixed by the collection) and looks of a part's rows."""
        idx = self.parts[part]
        name = self.dataset.manifest.collection.iloc[0]
        return {"images": self.images[idx], "labels": self.frame.label.to_numpy()[idx],
                "groups": np.array([f"{name} {g}" for g in self.frame.group.to_numpy()[idx]]),
                "looks": self.frame.look.to_numpy()[idx]}


@dataclass
class Pool:
    """Every image a generalisation run may draw from: the Kaggle set's, then each collection's, in
    `datasets.EXTERNAL`'s order; `offset[name]` is where a collection's rows start."""

    images: np.ndarray
    labels: np.ndarray
    offset: dict[str, int]
    fingerprint: str

    @classmethod
    def stack(cls, kaggle: Dataset, kaggle_images: np.ndarray, collections: dict[str, Collection]) -> Pool:
        offset, n = {}, len(kaggle_images)
        for name, c in collections.items():
            offset[name], n = n, n + len(c.images)
        return cls(np.concatenate([kaggle_images, *(c.images for c in collections.values())]),
                   np.concatenate([kaggle.manifest.label.to_numpy(),
                                   *(c.dataset.manifest.label.to_numpy() for c in collections.values())]),
                   offset, "+".join([kaggle.fingerprint, *(c.dataset.fingerprint for c in collections.values())]))

    def split(self, kaggle_split: Split, train_parts: dict[str, np.ndarray], min_share: float = MIN_SHARE) -> Split:
        """The Kaggle split with each named collection's `train` rows added to training, repeated up to
        `min_share` of the Kaggle training rows (1: every collection as many rows as the Kaggle set, i.e.
        sampling balanced by collection); validation and Testing stay the Kaggle set's."""
        floor = round(min_share * len(kaggle_split.train))
        extra = [np.resize(self.offset[name] + rows, max(len(rows), floor)) for name, rows in train_parts.items()
                 if len(rows)]
        return Split(np.concatenate([kaggle_split.train, *extra]), kaggle_split.val, kaggle_split.test)

    def trained_images(self, kaggle_split: Split, train_parts: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """Images and labels of every distinct row a run on `split(kaggle_split, train_parts)` trains on."""
        rows = np.unique(self.split(kaggle_split, train_parts).train)
        return self.images[rows], self.labels[rows]


# The mask-guided variant of the recipe (notebook 07's model and mask term, `losses.mask_alignment_loss`),
# with `Guide`'s masks: experiments/generalised_guided.py and generalised_guided_folds.py measure it (it
# points at the tumours of a collection whose boxes it trained on, and does worse on a collection left out).
MASK_GUIDED = {"model": "custom_cnn_guided", "mask_weight": 1.0}


@dataclass
class Guide:
    """What a mask-guided run trains its class maps towards: the expert masks of the Kaggle training rows,
    and the tumour boxes of each collection's `train` rows (by pool row). No other row's mask or box
    is read."""

    kaggle_masks: np.ndarray  # aligned with the Kaggle split's training rows
    boxes: dict[int, np.ndarray]

    @classmethod
    def build(cls, pool: Pool, kaggle: Dataset, kaggle_split: Split, collections: dict[str, Collection],
              size: int) -> Guide:
        boxes = {}
        for name, c in collections.items():
            rows = c.parts["train"]
            masks = box_masks(c.dataset.manifest.iloc[rows], size)
            boxes.update({pool.offset[name] + int(r): m for r, m in zip(rows, masks, strict=True) if m.any()})
        return cls(training_masks(kaggle, kaggle_split.train, size), boxes)

    def masks(self, split: Split) -> np.ndarray:
        """(len(split.train), size, size) uint8 0/1, aligned with `split.train` (`Pool.split`'s: the
        Kaggle training rows first), zero where a row has neither mask nor box."""
        n = len(self.kaggle_masks)
        out = np.zeros((len(split.train), *self.kaggle_masks.shape[1:]), np.uint8)
        out[:n] = self.kaggle_masks
        for k, row in enumerate(split.train[n:], start=n):
            box = self.boxes.get(int(row))
            if box is not None:
                out[k] = box
        return out


def generalised_config(params: dict, seed: int, steps: int | None = None, **overrides) -> TrainConfig:
    """The recipe meant to generalise, `GENERALISED` over notebook 03's, for `steps` optimiser steps (the
    profile's `generalise_steps` by default; a profile in epochs has none); `overrides` take ingredients
    out (the ablations). The epochs grow with the steps beyond `generalise_steps`, so that they never end
    a run before its steps."""
    base = params["generalise_steps"]
    steps = steps or base
    epochs = params["epochs"] if base is None else max(params["epochs"], -(-steps * params["epochs"] // base))
    fields = {**GENERALISED, "max_steps": steps, "epochs": epochs, **overrides}
    return custom_cnn_config(params, seed, **fields)



def train_generalised(params: dict, seed: int, pool: Pool, kaggle_split: Split, parts: dict[str, dict[str, np.ndarray]],
                      trained_on: tuple[str, ...], *, steps: int | None = None, guide: Guide | None = None,
                      retrain: bool = False, progress: bool = True, collection_share: float = MIN_SHARE,
                      **overrides) -> RunResult:
    """One seed of the recipe (`generalised_config`) through the run cache, on the Kaggle set and the `train`
    parts of the collections `trained_on`, each repeated up to `collection_share` of the Kaggle training rows
    (`Pool.split`); with a `guide`, the mask-guided variant (`MASK_GUIDED`). Class weights are the Kaggle
    training set's four classes, as for variant (b)."""
    cfg = generalised_config(params, seed, steps, **(MASK_GUIDED if guide else {}), **overrides)
    split = pool.split(kaggle_split, {name: parts[name]["train"] for name in trained_on}, collection_share)
    weights = class_weights(pool.labels[kaggle_split.train], cfg.class_weighting)
    return train_or_load(cfg, pool.images, pool.labels, split, weights, pool.fingerprint, retrain=retrain,
                         progress=progress, train_masks=guide.masks(split) if guide else None)


def load_collections(kaggle: Dataset, kaggle_hashes: np.ndarray, size: int, limit: int | None = None
                     ) -> dict[str, Collection]:
    """Every collection of `datasets.EXTERNAL`, decoded at `size` (the cache of `kaggle.load_images`),
    audited against the Kaggle set on perceptual hashes at the leakage audit's size, and parted."""
    from braintumour.datasets import EXTERNAL
    from braintumour.datasets.folds import AUDIT_IMAGE_SIZE

    out = {}
    for name, source in EXTERNAL.items():
        dataset = source.load()
        hashes = audit.perceptual_hashes(load_images(dataset, AUDIT_IMAGE_SIZE))
        frame = audit_collection(dataset, hashes, kaggle, kaggle_hashes)
        out[name] = Collection(dataset, load_images(dataset, size), frame, collection_parts(frame, limit=limit))
    return out


# Each ingredient of the recipe taken out in turn, on the leave-one-out folds the profile names: the
# recipe's fields overridden, and whether the other collections' images are trained on.
ABLATIONS: dict[str, dict] = {
    "no_other_collections": {"overrides": {}, "collections": False},  # the Kaggle set only: one run for all folds
    "no_skull_strip": {"overrides": {"randomise": {}}, "collections": True},
    "no_randomise": {"overrides": {"randomise": None}, "collections": True},
}


def train_ablation(params: dict, name: str, held_out: str, pool: Pool, kaggle_split: Split,
                   parts: dict[str, dict[str, np.ndarray]], *, retrain: bool = False) -> RunResult:
    """The leave-one-out run for `held_out` with ablation `name`'s ingredient taken out (seed 0)."""
    spec = ABLATIONS[name]
    trained_on = tuple(n for n in parts if n != held_out) if spec["collections"] else ()
    return train_generalised(params, 0, pool, kaggle_split, parts, trained_on, retrain=retrain, progress=False,
                             **spec["overrides"])
