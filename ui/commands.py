"""``studio ui``, registered with the studio CLI through the ``studio.commands`` entry point."""

from __future__ import annotations


def commands() -> dict:
    from ui.app import UIConfig, launch

    def run(cfg):
        launch(cfg)

    return {("ui",): (UIConfig, run, "the Gradio app: one-step student beside the teacher, FID runs")}
