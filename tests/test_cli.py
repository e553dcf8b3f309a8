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


def test_required_options_are_required(capsys):
    from distill.reflow.config import PairsConfig

    with pytest.raises(SystemExit):
        main(["reflow", "pairs", "--num", "4"])
    assert "the following arguments are required: --teacher" in capsys.readouterr().err
    with pytest.raises(TypeError):
        PairsConfig()  # the Python API has no empty-string default either


def test_the_schema_checks_ranges_and_choices_for_the_python_api_too():
    from dataclasses import dataclass, field

    from studio import StudioError
    from studio.cli.schema import validate
    from distill.reflow.config import PairsConfig

    with pytest.raises(StudioError, match="^--lr must be greater than 0, got 0.0$"):
        validate(TrainerConfig(lr=0.0))
    with pytest.raises(StudioError, match="^--ema-decay must be less than 1, got 1.0$"):
        validate(TeacherConfig(train=TrainerConfig(ema_decay=1.0)))
    with pytest.raises(StudioError, match="--solver must be one of auto, dpmsolver"):
        validate(PairsConfig(teacher="t", solver="sideways"))

    @dataclass
    class Two:
        a: TrainerConfig = field(default_factory=TrainerConfig)

    with pytest.raises(StudioError, match="^--a-batch-size must be at least 1, got 0$"):  # nested: its own prefix
        validate(Two(a=TrainerConfig(batch_size=0)))
    validate(TeacherConfig())  # the defaults are valid


def test_optional_options_default_to_none_and_take_a_value():
    from studio.cli.sample import SampleConfig

    assert parse(SampleConfig, ["pipe"]).steps is None and parse(SampleConfig, ["pipe"]).guidance is None
    cfg = parse(SampleConfig, ["pipe", "--steps", "3", "--guidance", "2.5"])
    assert (cfg.pipeline, cfg.steps, cfg.guidance) == ("pipe", 3, 2.5)


def test_the_training_loop_options_form_their_own_help_group(capsys):
    with pytest.raises(SystemExit):
        main(["reflow", "train", "--help"])
    out = capsys.readouterr().out
    out = out[out.index("options:"):]  # the option list, not the usage line
    group = out.index("Options of the shared training loop, the same for every training command (TrainerConfig):")
    assert out.index("--caption-dropout") < group < out.index("--batch-size") and group < out.index("--overwrite")


def test_resume_differences_name_the_options_and_skip_the_resumable_ones():
    from dataclasses import asdict, replace

    from studio.training.run_folder import differences

    saved = json.loads(json.dumps(asdict(TeacherConfig())))
    now = replace(TeacherConfig(), vae_steps=7, train=replace(TeacherConfig().train, lr=0.5, steps=99, log_every=3,
                                                              resume="latest"))
    assert differences(saved, now) == ["--vae-steps 3000 -> 7", "--lr 0.001 -> 0.5"]
    del saved["sample_guidance"]  # an older run that did not record a newer option: taken at its default
    assert differences(saved, TeacherConfig()) == []
