"""Display titles: how tables, figures and sentences name the ids that metrics files and records key
things by. A model's title lives with its registration (`models.REGISTRY`); these are the rest."""

from __future__ import annotations

CLASS_TITLES: dict[str, str] = {
    "glioma": "Glioma",
    "meningioma": "Meningioma",
    "notumor": "No tumour",
    "pituitary": "Pituitary",
}
SOURCE_GROUP_TITLES: dict[str, str] = {"size_512": "512 x 512", "other_size": "other size"}
# Notebook 07's ablation rows and the held-out subsets of the patient-disjoint folds.
GUIDED_VARIANT_TITLES: dict[str, str] = {"plain": "plain custom CNN (notebook 03/05)",
                                         "architecture": "(a) architecture", "mask_term": "(b) + mask term",
                                         "centred_blob": "centred blob"}
SUBSET_TITLES: dict[str, str] = {"all": "all images", "figshare": "figshare (patient known)"}
# Notebook 06's Grad-CAM: which held-out images, and what made the maps.
HELD_OUT_TITLES: dict[str, str] = {"unseen_folds": "unseen-patient folds", "official_testing": "official Testing"}
CAM_SOURCE_TITLES: dict[str, str] = {"custom_cnn": "custom CNN", "centred_blob": "centred blob"}
# Where a heatmap's mass goes (explain.energy_by_region).
REGION_TITLES: dict[str, str] = {"tumour": "tumour", "other_head": "other head", "outside_head": "outside head",
                                 "border_band": "border band", "empty_maps": "empty maps"}
# Near-duplicate pairs (audit.describe_pairs): both images in one split, or one in each.
PAIR_KIND_TITLES: dict[str, str] = {"within_training": "within Training", "within_testing": "within Testing",
                                    "training_testing": "across Training-Testing"}
# The collections of `config.COLLECTIONS`, and Kaggle Testing beside them.
COLLECTION_TITLES: dict[str, str] = {"kaggle_testing": "Kaggle Testing", "brats": "BraTS 2021 (gliomas)",
                                     "br35h": "Br35H (tumours)", "oasis": "OASIS (healthy)",
                                     "openneuro": "OpenNeuro ds000177 (healthy)"}
