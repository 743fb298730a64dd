"""Analysis of trained models: metrics and bootstrap intervals, calibration and the uncertain flag, the
unfamiliar-input score, Grad-CAM explanations and their scores against masks, per-collection scores,
the comparison table, and the model notebook 11 ships."""
