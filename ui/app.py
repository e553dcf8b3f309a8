"""``studio ui``: the Gradio app. Generate tab (any two models side by side, by default the one-step student
beside the N-step teacher),
model picker, FID tab (FID, KID with its std, precision/recall and class agreement; a saved history
and a plot of any metric against steps). Binds to 127.0.0.1 unless told otherwise.

Nothing loads at import: the app is built by :func:`build_app` and models load on first use.
Generated images go to a private ``studio-ui-*`` temporary folder, removed when the app closes or
the process exits; Gradio's own file cache is cleared likewise (``delete_cache``). The app takes
no uploads: Gradio's upload route refuses files over ``MAX_UPLOAD``.
"""

from __future__ import annotations

import atexit
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from studio import StudioError
from studio.cli.schema import option
from studio.devices import resolve_device

from ui.actions import LIMITS, generate_pair, references, run_fid
from ui.fid_view import PLOTTED, VALUE, WIDTHS, plot_frame, summary, table
from ui.history import last_fid, read_history
from ui.registry import ModelRegistry

EXAMPLES = ["a photo of an ankle boot", "a photo of a bag", "an image of a dress", "a picture of a sneaker",
            "a photo of a trouser", "a photo of a pullover"]
FAST_KINDS = ("one-step-student", "2-rectified-flow", "flow", "consistency")
MAX_UPLOAD = "1mb"


@dataclass
class UIConfig:
    """Settings of studio ui."""

    models: str = option("ui/models", "folder of pipelines to serve (the picker stays in it)")
    host: str = option("127.0.0.1", "bind address; 0.0.0.0 exposes the app to the network")
    port: int = option(7860, ge=1, le=65535)
    data_dir: str = option("", "Fashion-MNIST files (default: the studio's search path)")
    data_root: str = option("", "image folders and .npz statistics offered as FID references")
    concurrency: int = option(2, "generate requests run at once; FID runs one at a time", ge=1)
    device: str = "cpu"


def _error(e: Exception):
    import gradio as gr

    return gr.Error(str(e))


def build_app(cfg: UIConfig):
    import gradio as gr

    registry = ModelRegistry(cfg.models, str(resolve_device(cfg.device)))
    names = registry.names()
    if not names:
        raise StudioError(f"no models (pipelines with model_index.json, or EDM and consistency model folders) "
                          f"under {cfg.models}")
    out_dir = Path(tempfile.mkdtemp(prefix="studio-ui-"))
    atexit.register(shutil.rmtree, out_dir, ignore_errors=True)
    # either side takes any model; by default a one-step student (else another fast model) beside the teacher
    fast = registry.by_kind(*FAST_KINDS) or names
    pick_fast = next((n for n in fast if registry.info(n)["kind"] == "one-step-student"), fast[0])
    pick_slow = (registry.by_kind("teacher") + registry.by_kind("edm", "consistency") + names)[0]

    def describe(name):
        try:
            info = registry.info(name)
        except StudioError as e:
            raise _error(e) from None
        fid = last_fid(registry.root, name)
        return {**info, "last_fid": fid}

    def on_generate(prompt, seed, steps, guidance, num_images, fast_model, slow_model, progress=gr.Progress()):
        def report(done, total):
            progress(done / total, desc=f"{slow_model}: step {done}/{total}")

        try:
            r = generate_pair(registry, out_dir, prompt, seed, steps, guidance, num_images, fast_model, slow_model,
                              report)
        except StudioError as e:
            raise _error(e) from None
        f, s = r["fast"], r["slow"]
        label = "{model}: {steps} step(s), guidance {guidance}, {ms:.0f} ms ({per:.0f} ms/image)"
        return (f["paths"], label.format(**f, ms=f["seconds"] * 1e3, per=f["seconds"] * 1e3 / len(f["paths"])),
                s["paths"], label.format(**s, ms=s["seconds"] * 1e3, per=s["seconds"] * 1e3 / len(s["paths"])),
                r["seed"])

    def plotted(label):
        if label not in PLOTTED:
            raise _error(StudioError(f"{label!r} is not a metric; pick one of {', '.join(PLOTTED)}"))
        # a plain frame: Gradio 6's scatter plot redraws new data only when given data alone
        return plot_frame(read_history(registry.root), label)

    def on_fid(model, reference, n, steps, label, progress=gr.Progress(track_tqdm=True)):
        try:
            record = run_fid(registry, model, reference, n, steps, cfg.data_root or None, cfg.data_dir or None)
        except StudioError as e:
            raise _error(e) from None
        return summary(record), table(read_history(registry.root)), plotted(label)

    with gr.Blocks(title="Distillation studio", delete_cache=(3600, 3600)) as app:
        gr.Markdown("# Distillation studio\nOne-step student beside the many-step teacher, and FID.")
        with gr.Tab("Generate"):
            with gr.Row():
                prompt = gr.Textbox(label="Prompt", value=EXAMPLES[0], max_lines=2, elem_id="prompt")
                seed = gr.Number(label="Seed (-1: random)", value=-1, precision=0)
            gr.Examples([[e] for e in EXAMPLES], inputs=[prompt])
            with gr.Row():
                steps = gr.Slider(0, LIMITS["steps"][1], value=0, step=1, label="Right model's steps (0: its own)")
                guidance = gr.Slider(*LIMITS["guidance"], value=5.0, step=0.5, label="Right model's guidance")
                num_images = gr.Slider(*LIMITS["num_images"], value=4, step=1, label="Images")
            with gr.Row():
                fast_model = gr.Dropdown(names, value=pick_fast, label="Left model (its own steps and guidance)")
                slow_model = gr.Dropdown(names, value=pick_slow, label="Right model (the steps and guidance above)")
            button = gr.Button("Generate", variant="primary", elem_id="generate")
            used_seed = gr.Number(label="Seed used", precision=0, interactive=False)
            with gr.Row():
                with gr.Column():
                    fast_time = gr.Markdown()
                    fast_gallery = gr.Gallery(label="Left model", columns=4, elem_id="fast-gallery")
                with gr.Column():
                    slow_time = gr.Markdown()
                    slow_gallery = gr.Gallery(label="Right model", columns=4, elem_id="slow-gallery")
            button.click(on_generate, [prompt, seed, steps, guidance, num_images, fast_model, slow_model],
                         [fast_gallery, fast_time, slow_gallery, slow_time, used_seed], api_name="generate",
                         concurrency_limit=cfg.concurrency, concurrency_id="generate")
        with gr.Tab("Models"):
            picked = gr.Dropdown(names, value=names[0], label="Model")
            details = gr.JSON(value=describe(names[0]))
            picked.change(describe, picked, details, api_name="model_info")
        with gr.Tab("FID"):
            with gr.Row():
                fid_model = gr.Dropdown(names, value=pick_fast, label="Model")
                reference = gr.Dropdown(references(cfg.data_root or None), value="fashion-mnist:test",
                                        label="Reference")
                fid_n = gr.Slider(*LIMITS["fid_n"], value=500, step=100, label="Samples (N)", elem_id="fid-n")
                fid_steps = gr.Slider(0, LIMITS["steps"][1], value=0, step=1, label="Steps (0: the model's own)")
            fid_button = gr.Button("Compute FID, KID, precision/recall and class agreement", variant="primary",
                                   elem_id="fid-run")
            fid_result = gr.Markdown(elem_id="fid-result")
            history = read_history(registry.root)
            history_table = gr.Dataframe(value=table(history), label="History (newest first)", interactive=False,
                                         wrap=True, column_widths=WIDTHS, elem_id="fid-history")
            metric = gr.Dropdown(list(PLOTTED), value="FID", label="Plot", elem_id="fid-plot-metric")
            plot = gr.ScatterPlot(value=plot_frame(history, "FID"), x="steps", y=VALUE,
                                  y_title="the Plot menu's metric", color="model",
                                  label="The metric chosen in the Plot menu, against steps", elem_id="fid-plot")
            metric.change(plotted, metric, plot, api_name="fid_plot")
            fid_button.click(on_fid, [fid_model, reference, fid_n, fid_steps, metric],
                             [fid_result, history_table, plot], api_name="fid", concurrency_limit=1,
                             concurrency_id="fid")
    app.queue(max_size=64)
    app.studio_out_dir = out_dir
    close = app.close

    def close_and_clean(verbose: bool = True):
        close(verbose)
        shutil.rmtree(out_dir, ignore_errors=True)

    app.close = close_and_clean
    return app


def launch(cfg: UIConfig, block: bool = True):
    app = build_app(cfg)
    print(f"serving {cfg.models} at http://{cfg.host}:{cfg.port}")
    app.launch(server_name=cfg.host, server_port=cfg.port, allowed_paths=[str(app.studio_out_dir)],
               prevent_thread_lock=not block, show_error=True, max_file_size=MAX_UPLOAD)
    return app
