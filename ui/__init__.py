"""Gradio front end. Lands in a later issue."""
