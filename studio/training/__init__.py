"""Training: the method contract, the one loop on accelerate, the driver from config to artefact,
checkpoints, EMA, data order and randomness."""
