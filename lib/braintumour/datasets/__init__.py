"""Every image collection the compendium reads, one module each, with one interface (`source.Source`:
find, fetch, check, load). The Kaggle set and its figshare masks keep their own modules (`data`,
`download`, `figshare`); the collections here are the ones a model is tested for generalisation on."""

from __future__ import annotations

from braintumour.config import COLLECTIONS
from braintumour.datasets import br35h, brats, oasis, openneuro
from braintumour.datasets.source import Source

# In `config.COLLECTIONS`' order: tables show them, and a generalisation run's pool stacks them, so.
EXTERNAL: dict[str, Source] = {s.name: s for s in (brats.SOURCE, br35h.SOURCE, oasis.SOURCE, openneuro.SOURCE)}
assert tuple(EXTERNAL) == COLLECTIONS
