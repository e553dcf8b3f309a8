"""``studio reflow ...`` commands, registered with the studio CLI through the ``studio.commands`` entry point."""

from __future__ import annotations


def commands() -> dict:
    from distill.reflow.config import DistillConfig, PairsConfig, ReflowTrainConfig, StraightnessConfig
    from distill.reflow.pairs import generate_pairs
    from distill.reflow.straightness import run_straightness
    from distill.reflow.train import train_reflow, train_student

    return {
        ("reflow", "pairs"): (PairsConfig, generate_pairs, "teacher couplings (noise, ODE endpoint, prompt) as shards"),
        ("reflow", "train"): (ReflowTrainConfig, train_reflow, "train a 2-rectified flow on teacher couplings"),
        ("reflow", "distill"): (DistillConfig, train_student, "distill a 2-rectified flow into a one-step student"),
        ("reflow", "straightness"): (StraightnessConfig, run_straightness, "straightness S of a model's ODE"),
    }
