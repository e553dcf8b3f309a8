"""Reflow / InstaFlow: teacher couplings, 2-rectified flow, one-step distillation, straightness.

Time convention: ``studio.diffusion.flow``.
"""
