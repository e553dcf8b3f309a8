"""FID that works offline and agrees with the reference implementations (torch-fidelity, torchmetrics)."""
