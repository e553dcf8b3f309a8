"""DMD2: one-step distillation by distribution matching (Yin et al. 2024), on the shared loop."""
