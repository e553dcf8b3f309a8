"""``studio ict ...`` commands, registered through the ``studio.commands`` entry point."""

from __future__ import annotations


def commands() -> dict:
    from consistency.config import ICTConfig, ICTSampleConfig
    from consistency.run import run_ict_sample, train_ict

    return {
        ("ict", "train"): (ICTConfig, train_ict, "Improved Consistency Training from data (iCT)"),
        ("ict", "sample"): (ICTSampleConfig, run_ict_sample, "1-, 2- or multistep samples of a consistency model"),
    }
