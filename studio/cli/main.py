"""The ``studio`` command line, generated from the config dataclasses."""

from __future__ import annotations

import argparse
import os
import sys
from importlib.metadata import entry_points

from studio import StudioError
from studio.cli.schema import add_config_arguments, config_from_args, validate


def _commands():
    # imported lazily so `studio --help` stays fast and nothing heavy loads at import
    from studio.cli.demo import DemoConfig, run_demo
    from studio.fid.run import FIDConfig, FIDStatsConfig, compute_fid, compute_stats
    from studio.cli.build import BuildConfig, run_build
    from studio.cli.sample import SampleConfig, run_sample

    def fetch(_cfg):
        from studio.data.fetch import fetch_fashion_mnist

        print(f"Fashion-MNIST ready in {fetch_fashion_mnist()}")

    builtin = {
        ("data", "fetch"): (None, fetch, "install or download the Fashion-MNIST IDX files"),
        ("sample",): (SampleConfig, run_sample, "sample a grid of images from a pipeline"),
        ("model", "build"): (BuildConfig, run_build, "assemble a preset's pipeline (sd15: SD 1.5's architecture) "
                                                     "with random weights, offline"),
        ("demo",): (DemoConfig, run_demo, "train the built-in teacher on a small CPU budget and sample each class"),
        ("fid",): (FIDConfig, compute_fid, "FID between two specs (folder, dataset split, pipeline, .npz)"),
        ("fid-stats",): (FIDStatsConfig, compute_stats, "Inception statistics of a spec, as .npz"),
    }
    return {**builtin, **_method_commands()}


def _method_commands() -> dict:
    """Commands of the method packages, found through the ``studio.commands`` entry point group
    (declared in pyproject.toml), so the core never imports a method."""
    found = {}
    for ep in sorted(entry_points(group="studio.commands"), key=lambda e: e.name):
        found.update(ep.load()())
    return found


def build_parser():
    parser = argparse.ArgumentParser(prog="studio", description="Distillation studio")
    groups = {}
    top = parser.add_subparsers(dest="command", required=True)
    commands = _commands()
    for path, (cls, _fn, helptext) in commands.items():
        if len(path) == 1:
            sub = top.add_parser(path[0], help=helptext)
        else:
            if path[0] not in groups:
                groups[path[0]] = top.add_parser(path[0], help=f"{path[0]} commands").add_subparsers(dest="subcommand", required=True)
            sub = groups[path[0]].add_parser(path[1], help=helptext)
        if cls is not None:
            add_config_arguments(sub, cls)
        sub.set_defaults(_path=path)
    return parser, commands


def main(argv=None) -> int:
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    parser, commands = build_parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["--"]:  # `torchrun ... -m studio -- reflow pairs --num N`: the launcher's own parser
        argv = argv[1:]     # would otherwise claim --num as an abbreviation of its --numa-binding
    ns = parser.parse_args(argv)
    cls, fn, _ = commands[ns._path]
    try:
        cfg = config_from_args(cls, ns) if cls is not None else None
        if cfg is not None:
            validate(cfg)  # the schema's ranges and choices, before any work
        result = fn(cfg)
    except StudioError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if result is not None and not isinstance(result, (int, dict)):
        print(result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
