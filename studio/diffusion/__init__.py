"""Diffusion math and sampling: the denoiser adapter (every parameterisation), the rectified-flow
convention, the SD training objective, prompt encoding and the sampler."""
