"""Improved Consistency Training (iCT, Song & Dhariwal 2023): recipe, objective, sampling, diffusers export."""
