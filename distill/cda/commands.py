"""``studio cda ...`` commands, registered through the ``studio.commands`` entry point."""

from __future__ import annotations


def commands() -> dict:
    from distill.cda.config import EvalConfig, RecoverConfig, SqueezeConfig
    from distill.cda.evaluate import run_eval
    from distill.cda.recover import run_recover
    from distill.cda.squeeze import run_squeeze

    return {
        ("cda", "squeeze"): (SqueezeConfig, run_squeeze, "train the teacher classifier (SRe2L squeeze)"),
        ("cda", "recover"): (RecoverConfig, run_recover, "synthesise images per class from the teacher (CDA)"),
        ("cda", "eval"): (EvalConfig, run_eval, "train a student on a set with the teacher's soft labels; top-1"),
    }
