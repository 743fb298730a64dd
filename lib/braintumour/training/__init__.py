"""Training: the architectures, the recipes and the profiles' numbers, device and precision, augmentation
and acquisition randomisation, the loss terms and the step plan, the loop, checkpoint files and the run
cache; and the runs beyond the Kaggle set (Br35H's variants, the recipe meant to generalise)."""
