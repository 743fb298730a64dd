"""braintumour: the thin library behind the brain-MRI tumour-classification compendium.

Data flows one way: dataset folder -> manifest + fingerprint (`data`) -> decoded uint8 cache
(`data`) -> splits (`splits`) -> models (`models`) -> training (`train`) -> evaluation
(`evaluate`) -> `reports/`. Notebooks call these functions; they hold no long logic themselves.
"""

from braintumour.config import CLASSES

__all__ = ["CLASSES"]
__version__ = "0.1.0"
