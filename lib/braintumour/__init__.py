"""braintumour: the thin library behind the brain-MRI tumour-classification compendium.

Data flows one way, one package per stage: `datasets` (find, fetch, decode and audit every
collection: the Kaggle set's manifest, fingerprint and uint8 cache in `datasets.kaggle`, decoding in
`datasets.images`, splits and folds) -> `training` (models, recipes, the loop, the run cache) ->
`analysis` (metrics, calibration, Grad-CAM, the unfamiliar score) -> `reporting` (metrics files,
figures, tables, sentences, the exported notebooks) -> `reports/`. `config` and `files` serve every
stage; `predict` (with `inputcheck`) reads a saved model for new scans. Notebooks call these
functions; they hold no long logic themselves (docs/architecture.md).
"""

from braintumour.config import CLASSES

__all__ = ["CLASSES"]
__version__ = "0.1.0"
