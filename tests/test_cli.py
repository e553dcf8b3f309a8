import argparse
import json

import pytest

from studio.cli import build_parser, main
from studio.cli.schema import add_config_arguments, config_from_args
from studio.teacher import TeacherConfig
from studio.training.config import TrainerConfig


def parse(cls, argv):
    p = argparse.ArgumentParser()
    add_config_arguments(p, cls)
    return config_from_args(cls, p.parse_args(argv))


def test_defaults_round_trip():
    assert parse(TeacherConfig, []) == TeacherConfig()


def test_flattened_nested_bool_and_literal_options():
    cfg = parse(TeacherConfig, ["--steps", "7", "--lr", "0.5", "--no-train-text-encoder", "--lr-schedule", "linear",
                                "--resume", "latest", "--vae-steps", "3"])
    assert cfg.train.steps == 7 and cfg.train.lr == 0.5 and cfg.train.lr_schedule == "linear"
    assert cfg.train_text_encoder is False and cfg.vae_steps == 3 and cfg.train.resume == "latest"
    # unchanged fields keep the method's own defaults, not TrainerConfig's
    assert cfg.train.batch_size == TeacherConfig().train.batch_size


def test_prefixed_nested_options():
    from dataclasses import dataclass, field

    @dataclass
    class Two:
        a: TrainerConfig = field(default_factory=TrainerConfig)
        b: TrainerConfig = field(default_factory=lambda: TrainerConfig(steps=5))

    cfg = parse(Two, ["--a-steps", "9"])
    assert cfg.a.steps == 9 and cfg.b.steps == 5


def test_bad_choice_is_rejected(capsys):
    with pytest.raises(SystemExit):
        parse(TeacherConfig, ["--lr-schedule", "sideways"])
    assert "invalid choice" in capsys.readouterr().err


def test_cli_lists_commands():
    parser, commands = build_parser()
    assert {("teacher", "train"), ("sample",), ("demo",), ("data", "fetch")} <= set(commands)


def test_cli_error_is_one_line(tmp_path, capsys):
    rc = main(["teacher", "train", "--data-dir", str(tmp_path / "none"), "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and err.startswith("error:") and "--data-dir" in err and "\n" not in err


def test_teacher_writes_resolved_config_and_rejects_bad_steps(fake_fmnist, tmp_path, capsys):
    out = tmp_path / "o"
    rc = main(["teacher", "train", "--data-dir", str(fake_fmnist), "--out", str(out), "--vae-steps", "0"])
    assert rc == 2 and "--vae-steps must be at least 1" in capsys.readouterr().err
    assert main(["teacher", "train", "--data-dir", str(fake_fmnist), "--out", str(out), "--vae-steps", "1",
                 "--steps", "0"]) == 2
    assert "--steps must be at least 1" in capsys.readouterr().err
    assert not (out / "stages").exists()  # rejected before any training
    rc = main(["teacher", "train", "--data-dir", str(fake_fmnist), "--out", str(out), "--vae-steps", "1",
               "--steps", "1", "--batch-size", "4", "--vae-batch-size", "4", "--tracker", "none", "--no-progress"])
    assert rc == 0 and (out / "model_index.json").is_file()
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["vae_steps"] == 1 and cfg["train"]["steps"] == 1 and cfg["train"]["lr"] == TeacherConfig().train.lr
