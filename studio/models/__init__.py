"""Models: load and save diffusers pipelines, the built-in size presets, the offline CLIP
tokenizer, and the model info file (``studio_model.json``)."""
