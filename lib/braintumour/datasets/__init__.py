"""Datasets: finding, fetching, decoding, auditing and splitting every image collection.

The Kaggle set (`kaggle`: layout, manifest, fingerprint, decoded cache, where its masks and patient ids
lie) is fetched by `download`; `figshare` derives the masks and patient ids from the figshare release
(downloaded by `resumable`); `images` decodes every source's files to one convention; `audit`, `splits`
and `folds` check it and part it. The external collections, one module each with one interface
(`source.Source`: find, fetch, check, load), are the ones a model is tested for generalisation on;
`EXTERNAL` lists them. `SOURCES` lists every source, each a `source.DataSource` (find, fetch, rows), in the
order `make data` fetches them: the figshare step needs the Kaggle set."""

from __future__ import annotations

from braintumour.config import COLLECTIONS
from braintumour.datasets import br35h, brats, figshare, kaggle, oasis, openneuro
from braintumour.datasets.source import DataSource, Source

# In `config.COLLECTIONS`' order: tables show them, and a generalisation run's pool stacks them, so.
EXTERNAL: dict[str, Source] = {s.name: s for s in (brats.SOURCE, br35h.SOURCE, oasis.SOURCE, openneuro.SOURCE)}
assert tuple(EXTERNAL) == COLLECTIONS
SOURCES: dict[str, DataSource] = {kaggle.SOURCE.name: kaggle.SOURCE, figshare.SOURCE.name: figshare.SOURCE, **EXTERNAL}
