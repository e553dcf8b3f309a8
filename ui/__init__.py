"""Gradio front end (``studio ui``): generation, model picker, FID runs. Imports nothing heavy."""
