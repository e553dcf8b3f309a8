"""Write the results tables of the docs from ``benchmarks/results/*.json``.

    python benchmarks/tables.py           # rewrite every generated table in docs/*.md and README.md
    python benchmarks/tables.py --check   # change nothing; name the stale tables, exit 1 if any

A generated table sits in a Markdown page between two marker lines, each on a line of its own:

    <!-- table: NAME -->
    (replaced by the table)
    <!-- /table -->

NAME is a key of ``TABLES``: the JSON files (stems under the results folder) it reads and the
function that builds its Markdown. Every figure in a generated table comes from those files;
to change one, rerun the benchmark (or edit the builder), never the page. ``--docs`` and
``--results`` point the script at other folders (the tests use copies). Standard library only,
so it runs without torch or the studio installed.

Number formats, the same in every table: FID 2 decimals, ms 1 decimal, top-1 (%) 2 decimals,
ratios 3 decimals, speed-ups 2 decimals with an ``x``, seconds 1 decimal, counts with thousands
separators, relative errors in % with 2 significant digits.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
RESULTS = ROOT / "benchmarks" / "results"
README = ROOT / "README.md"

BEGIN = re.compile(r"^<!-- table: (?P<name>[^ ]+) -->$", re.M)
REGION = re.compile(r"^<!-- table: (?P<name>[^ ]+) -->\n(?P<body>.*?)^<!-- /table -->$", re.M | re.S)


class TablesError(Exception):
    """A page or a results file the script cannot work with (one-line message)."""


# ---------------------------------------------------------------- number formats

def fid(x) -> str:
    return f"{x:.2f}"


def ms(x) -> str:
    return f"{x:,.1f}"


def top1(x) -> str:
    return f"{x:.2f}"


def ratio(x) -> str:
    return f"{x:.3f}"


def speedup(x) -> str:
    return f"{x:.2f}x"


def seconds(x) -> str:
    return f"{x:,.1f}"


def count(x) -> str:
    return f"{int(x):,}"


def rel_percent(x) -> str:
    """A relative error as a percentage, 2 significant digits."""
    return format(100.0 * x, ".2g")


def plain(x) -> str:
    """A setting as given (booleans as yes/no)."""
    if isinstance(x, bool):
        return "yes" if x else "no"
    if isinstance(x, float):
        return f"{x:g}"
    if isinstance(x, int):
        return count(x)
    if isinstance(x, list):
        return ", ".join(plain(v) for v in x)
    return str(x)


def met(flag: bool) -> str:
    return "met" if flag else "missed"


def table(header: list[str], rows: list[list]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def source(*stems: str) -> str:
    return "Source: " + ", ".join(f"`benchmarks/results/{s}.json`" for s in stems) + "."


def threshold(key: str, pattern: str) -> str:
    """The goal figure written into a goal key, e.g. '1.10' from 'student_fid_within_1.10x_teacher'."""
    m = re.search(pattern, key)
    if not m:
        raise TablesError(f"no goal figure in the key {key!r}")
    return m.group(1)


def goal_flag(goals: dict, pattern: str) -> tuple[str, bool]:
    """(goal figure, met) of the one boolean goal whose key matches ``pattern``."""
    keys = [k for k in goals if isinstance(goals[k], bool) and re.search(pattern, k)]
    if len(keys) != 1:
        raise TablesError(f"expected one goal key matching {pattern!r}, found {keys}")
    return threshold(keys[0], pattern), goals[keys[0]]


# ---------------------------------------------------------------- InstaFlow

def _seeded(rows: list[dict], prefix: str) -> dict:
    found = [r for r in rows if r.get("fid_runs") and r["name"].startswith(prefix)]
    if len(found) != 1:
        raise TablesError(f"instaflow.json: expected one seeded row named {prefix!r}..., found {len(found)}")
    return found[0]


def instaflow_rows(d: dict) -> str:
    d = d["instaflow"]
    rows = []
    for r in d["rows"]:
        runs = ", ".join(fid(v) for v in r.get("fid_runs", []))
        rows.append([r["name"], r["steps"], f"{r['guidance']:.1f}", count(r["n"]), fid(r["fid"]),
                     ms(r["ms_per_image"]), runs])
    return table(["model", "steps", "guidance", "N", "FID", "ms/image", "FID of each seed run"], rows) \
        + "\n\n" + source("instaflow")


def instaflow_guidance(d: dict) -> str:
    rows = [[r["name"], r["steps"], f"{r['guidance']:.1f}", count(r["n"]), fid(r["fid"])]
            for r in d["instaflow"]["guidance_sweep"]]
    return table(["model", "steps", "guidance", "N", "FID"], rows) + "\n\n" + source("instaflow")


def instaflow_goals(d: dict) -> str:
    d = d["instaflow"]
    g = d["goals"]
    teacher, student = _seeded(d["rows"], "teacher"), _seeded(d["rows"], "student")
    per_seed = ", ".join(ratio(s / t) for s, t in zip(student["fid_runs"], teacher["fid_runs"]))
    target, ok = goal_flag(g, r"within_(\d+(?:\.\d+)?)x")
    rows = [
        ["student 1-step FID / teacher 25-step FID (medians over seed runs)", ratio(g["student_vs_teacher_fid"]),
         f"<= {target}: {met(ok)}"],
        ["the same ratio, run by run", per_seed, ""],
        ["2-RF 1-step FID / teacher 1-step FID", ratio(g["2rf_1step_vs_teacher_1step_fid"]), ""],
        ["student speed-up over the 25-step teacher with CFG (ms/image)",
         speedup(g["student_speedup_vs_teacher_25step"]), ""],
    ]
    return table(["figure", "value", "goal"], rows) + "\n\n" + source("instaflow")


def instaflow_straightness(d: dict) -> str:
    rows = [[k, f"{v:.4f}"] for k, v in d["instaflow"]["straightness"].items()]
    return table(["model", "straightness S"], rows) + "\n\n" + source("instaflow")


def instaflow_output_sign(d: dict) -> str:
    rows = [[k, ratio(v)] for k, v in d["instaflow"]["step0_2rf_loss_by_output_sign"].items()]
    return table(["UNet output", "2-RF loss at step 0"], rows) + "\n\n" + source("instaflow")


def instaflow_stage_seconds(d: dict) -> str:
    rows = [[f"`{k}`", seconds(v)] for k, v in d["instaflow"]["stage_seconds"].items()]
    return table(["stage", "seconds"], rows) + "\n\n" + source("instaflow")


# ---------------------------------------------------------------- iCT

def _steps_of(name: str) -> str:
    m = re.search(r"(\d+)-step", name)
    return m.group(1) if m else ""


def ict_rows(d: dict) -> str:
    rows = [[r["name"], _steps_of(r["name"]), count(r["n"]), fid(r["fid"]), ms(r["ms_per_image"])]
            for r in d["ict"]["rows"]]
    return table(["model", "steps", "N", "FID", "ms/image"], rows) + "\n\n" + source("ict")


def ict_goals(d: dict) -> str:
    d = d["ict"]
    g, rows = d["goals"], []
    for key, value in g.items():
        m = re.fullmatch(r"ict_(\w+?)_vs_diffusion", key)
        if m:
            target, ok = goal_flag(g, rf"^{m.group(1)}_within_(\d+(?:\.\d+)?)x$")
            rows.append([f"iCT {m.group(1).replace('step', '-step')} FID / diffusion 25-step FID", ratio(value),
                         f"<= {target}: {met(ok)}"])
    by_name = {_steps_of(r["name"]): r for r in d["rows"] if r["name"].startswith("iCT")}
    diffusion = [r for r in d["rows"] if not r["name"].startswith("iCT")]
    if "1" in by_name and len(diffusion) == 1:
        rows.append(["iCT 1-step speed-up over the diffusion model (ms/image)",
                     speedup(diffusion[0]["ms_per_image"] / by_name["1"]["ms_per_image"]), ""])
    return table(["figure", "value", "goal"], rows) + "\n\n" + source("ict")


def ict_budget(d: dict) -> str:
    b = d["ict"]["budget"]
    rows = [["optimizer steps (each model)", count(b["optimizer_steps_each"])], ["batch", count(b["batch"])],
            ["learning rate", plain(b["lr"])], ["optimizer", b["optimizer"]], ["EMA decay", plain(b["ema_decay"])],
            ["dropout", plain(b["dropout"])], ["iCT training, s", seconds(b["ict_train_s"])],
            ["diffusion training, s", seconds(b["diffusion_train_s"])]]
    return table(["setting", "value"], rows) + "\n\n" + source("ict")


def ect_rows(d: dict) -> str:
    e = d["ect"]
    rows = [[r["name"], count(r["nfe"]), count(r["n"]), fid(r["fid"]), f"{r['kid']:.4f} ± {r['kid_std']:.4f}",
             ms(r["ms_per_image"])] for r in e["rows"]]
    q = e["quoted_from_ict_json"]
    rows += [[f"{r['name']} (quoted from ict.json, {q['date'][:10]})", _steps_of(r["name"]), count(r["n"]),
              fid(r["fid"]), "", ms(e["ddpm_ms_per_image"]) if "diffusion" in r["name"] else ""] for r in q["rows"]]
    return table(["model", "network evaluations", "N", "FID", "KID ± std", "ms/image"], rows) + "\n\n" + source("ect")


def ect_sweep(d: dict) -> str:
    rows = [[r["name"], count(r["nfe"]), count(r["n"]), fid(r["fid"])] for r in d["ect"]["sweep"]]
    return table(["EDM sampler", "network evaluations", "N", "FID"], rows) + "\n\n" + source("ect")


def ect_goals(d: dict) -> str:
    g = d["ect"]["goals"]
    rows = [["ECT 2-step FID / EDM best FID", ratio(g["ect_2step_vs_edm"]), f"<= 1.2: {met(g['ect_2step_within_1.2x'])}"],
            ["ECT 1-step FID / EDM best FID", ratio(g["ect_1step_vs_edm"]), f"<= 1.5: {met(g['ect_1step_within_1.5x'])}"],
            ["ECT tuning time / EDM training time (step costs of this run)", ratio(g["tune_vs_pretrain_time"]),
             f"<= 0.333: {met(g['tune_within_a_third'])}"],
            ["the same from the stages' wall clocks", ratio(g["tune_vs_pretrain_wall_clock"]), ""]]
    return table(["figure", "value", "goal"], rows) + "\n\n" + source("ect")


def ect_totals(d: dict) -> str:
    t = d["ect"]["totals"]
    rows = [["EDM pretraining + ECT tuning", seconds(t["edm_train_s"]), seconds(t["ect_tune_s"]),
             seconds(t["edm_plus_ect_s"]), fid(t["ect_1step_fid"]), fid(t["ect_2step_fid"])],
            ["iCT from scratch (ict.json)", "", "", seconds(t["ict_from_scratch_s"]), fid(t["ict_1step_fid"]),
             fid(t["ict_2step_fid"])]]
    return table(["route", "pretraining, s", "tuning, s", "total, s", "1-step FID", "2-step FID"], rows) + \
        "\n\n" + source("ect", "ict")


def _fix_cells(r: dict) -> list:
    return [plain(r["noise_scale"]), plain(round(r["sigma_data_used"], 3)), plain(r["dropout"]), plain(r["flip"])]


def ict_fixes_rows(d: dict) -> str:
    f, g, q = d["ict_fixes"]["full"], d["ict_fixes"]["goals"], d["ict_fixes"]["quoted_from_ict_json"]
    rows = [["iCT, every fix", count(f["steps"]), *_fix_cells(f), count(f["n"]), fid(f["fid_1step"]),
             fid(f["fid_2step"]), f"{f['kid_1step']:.4f} / {f['kid_2step']:.4f}", ratio(g["ict_1step_vs_diffusion"]),
             ratio(g["ict_2step_vs_diffusion"]), seconds(f["train_s"])],
            [f"iCT, today's settings (ict.json, {q['date'][:10]})", count(d["ict"]["budget"]["optimizer_steps_each"]),
             "250", "0.5", plain(d["ict"]["budget"]["dropout"]), "no",
             count(q["rows"][0]["n"]), fid(q["rows"][0]["fid"]), fid(q["rows"][1]["fid"]), "",
             ratio(g["today_1step_vs_diffusion"]), ratio(g["today_2step_vs_diffusion"]),
             seconds(d["ict"]["budget"]["ict_train_s"])]]
    return table(["model", "steps", "noise scale", "sigma_data", "dropout", "flip", "N", "1-step FID",
                  "2-step FID", "KID 1 / 2 steps", "1-step / DDPM", "2-step / DDPM", "training, s"], rows) \
        + "\n\n" + source("ict_fixes", "ict")


def ict_fixes_ab(d: dict) -> str:
    d = d["ict_fixes"]
    rows = [[r["name"], *_fix_cells(r), count(r["n"]), fid(r["fid_1step"]), fid(r["fid_2step"]),
             f"{r['kid_1step']:.4f} / {r['kid_2step']:.4f}", seconds(r["train_s"])] for r in d["ab"]]
    done = "" if len(d["ab"]) == d["ab_runs"] else \
        f"In progress: {len(d['ab'])} of {d['ab_runs']} runs done (rerun the command to resume).\n\n"
    return table(["run", "noise scale", "sigma_data", "dropout", "flip", "N", "1-step FID", "2-step FID",
                  "KID 1 / 2 steps", "training, s"], rows) + "\n\n" + done + source("ict_fixes")


def teacher_quality_vae(d: dict) -> str:
    d = d["teacher_quality"]
    floor = d["real_train"]
    rows = [[r["name"], count(r["vae_steps"]), plain(r["vae_disc_weight"]),
             count(r["vae_disc_start"]) if r["vae_disc_weight"] else "", seconds(r["train_s"]), count(r["n"]),
             fid(r["fid"]), kid_pm(r)] for r in d["vae"]]
    rows.append(["real training images (the floor)", "", "", "", "", count(floor["n"]), fid(floor["fid"]),
                 kid_pm(floor)])
    return table(["autoencoder", "steps", "adversarial weight", "adversarial from step", "training, s", "N",
                  "reconstruction FID", "KID ± std"], rows) + "\n\n" + source("teacher_quality")


def teacher_quality_unet(d: dict) -> str:
    d = d["teacher_quality"]
    rows = [[r["name"], r["vae"], count(r["steps"]), seconds(r["train_s"]), plain(x["guidance"]), count(x["n"]),
             fid(x["fid"]), kid_pm(x)] for r in d["teacher"] for x in (r, r["at_old_guidance"])]
    return table(["teacher", "autoencoder", "UNet steps", "UNet training, s", "guidance", "N", "25-step FID",
                  "KID ± std"], rows) + "\n\n" + source("teacher_quality")


def teacher_quality_sweep(d: dict) -> str:
    d = d["teacher_quality"]
    rows = [[r["name"], plain(s["guidance"]), count(s["n"]), fid(s["fid"]), kid_pm(s)]
            for r in d["teacher"] for s in r["guidance_sweep"]]
    return table(["teacher", "guidance", "N", "25-step FID", "KID ± std"], rows) + "\n\n" + source("teacher_quality")


# ---------------------------------------------------------------- CDA

def _cell(r: dict) -> str:
    runs = r.get("runs", [])
    if len(runs) > 1:
        seeds = ", ".join(str(s) for s in r["seeds"])
        return f"{top1(r['top1'])} (median of seeds {seeds}: {', '.join(top1(v) for v in runs)})"
    return top1(r["top1"])


def cda_top1(stem: str):
    def build(d: dict) -> str:
        rows = d[stem]["rows"]
        ipcs = sorted({r["ipc"] for r in rows if r["ipc"] is not None})
        methods = list(dict.fromkeys(r["method"] for r in rows))
        has_full = any(r["ipc"] is None for r in rows)
        header = ["method"] + [f"IPC {i}" for i in ipcs] + (["all images"] if has_full else [])
        out = []
        for m in methods:
            cells = {r["ipc"]: r for r in rows if r["method"] == m}
            line = [m] + [_cell(cells[i]) if i in cells else "" for i in ipcs]
            if has_full:
                full = cells.get(None)
                line.append(f"{top1(full['top1'])} ({count(full['images'])} images)" if full else "")
            out.append(line)
        return table(header, out) + "\n\n" + source(stem)
    return build


def cda_compare(stem: str):
    """CDA minus SRe2L per IPC, with the spread (max - min) of the seeded cells."""
    def build(d: dict) -> str:
        rows = d[stem]["rows"]
        by = {(r["method"], r["ipc"]): r for r in rows}
        out = []
        for ipc in sorted({r["ipc"] for r in rows if r["method"] == "CDA"}):
            a, b = by.get(("CDA", ipc)), by.get(("SRe2L", ipc))
            if not (a and b):
                continue
            spread = lambda r: top1(max(r["runs"]) - min(r["runs"])) if len(r.get("runs", [])) > 1 else ""
            out.append([ipc, top1(a["top1"]), top1(b["top1"]), f"{a['top1'] - b['top1']:+.2f}",
                        len(a.get("runs", [1])), spread(a), spread(b)])
        return table(["IPC", "CDA", "SRe2L", "CDA - SRe2L", "student seeds", "CDA seed spread",
                      "SRe2L seed spread"], out) + "\n\n" + source(stem)
    return build


def cda_goals(stem: str):
    def build(d: dict) -> str:
        g = d[stem]["goals"]
        target, ok = goal_flag(g, r"at_least_(\d+(?:\.\d+)?)$")
        rows = [["CDA top-1 at IPC 10, %", top1(g["cda_ipc10_top1"]), f">= {target}: {met(ok)}"],
                ["CDA at least as good as SRe2L at every IPC (medians where seeded)",
                 plain(g["cda_at_least_sre2l_every_ipc"]), met(g["cda_at_least_sre2l_every_ipc"])]]
        return table(["figure", "value", "goal"], rows) + "\n\n" + source(stem)
    return build


def cda_recovery_speed(stem: str):
    def build(d: dict) -> str:
        rows = [[m, ms(v["median"]), ", ".join(ms(x) for x in v["runs"])]
                for m, v in d[stem]["recovery_ms_per_iteration"].items()]
        return table(["recovery", "ms/iteration (median)", "runs"], rows) + "\n\n" + source(stem)
    return build


def cda_setup(stem: str):
    def build(d: dict) -> str:
        t, s = d[stem]["teacher"], d[stem]["settings"]
        rows = [["teacher", f"`{t['arch']}`, width {t['width']}"], ["teacher training steps (batch 128)", count(t["steps"])],
                ["teacher training, s", seconds(t["train_seconds"])], ["teacher test top-1, %", top1(t["test_top1"])],
                ["recovery iterations per image", count(s["iterations"])], ["student steps (batch 100)", count(s["eval_steps"])],
                ["full-data student steps (batch 128)", count(s["full_steps"])],
                ["student seeds at IPC " + plain(s["seed_ipc"]), plain(s["seeds"])],
                ["generator of the generator-init row", f"`{s['generator']}`"]]
        return table(["setting", "value"], rows) + "\n\n" + source(stem)
    return build


# ---------------------------------------------------------------- small benchmarks

def trainer_overhead(d: dict) -> str:
    d = d["trainer_overhead"]
    rows = [[k + 1, ms(1000 * b), ms(1000 * s), ratio(r)]
            for k, (b, s, r) in enumerate(zip(d["bare_s_per_step"], d["studio_s_per_step"], d["ratios"]))]
    rows.append(["median", "", "", ratio(d["median_ratio"])])
    return (table(["repeat", "bare PyTorch ms/step", "studio ms/step", "studio / bare"], rows)
            + f"\n\n{d['steps_per_run']} steps per run, batch {d['batch_size']}, {d['repeats']} alternated repeats; "
              f"goal {d['goal']}. " + source("trainer_overhead"))


def fid_speed(d: dict) -> str:
    d = d["fid"]
    rows = [[k + 1, ms(1000 * r["bare_s_per_img"]), ms(1000 * r["studio_s_per_img"]), speedup(r["speedup"]),
             f"{r['fid_rel_diff']:.1e}"] for k, r in enumerate(d["repeats"])]
    rows.append(["median", "", "", speedup(d["median_speedup"]), f"{d['max_fid_rel_diff']:.1e} (largest)"])
    return (table(["repeat", "torchmetrics loop ms/image", "studio ms/image", "speed-up", "relative FID difference"], rows)
            + f"\n\n{count(d['images_per_side'])} images per side; goal {d['goal']}. " + source("fid"))


def fid_sanity(d: dict) -> str:
    s = d["fid"]["sanity_fashion_mnist_train_vs_test"]
    p = s["protocol"]
    rows = [["FID(Fashion-MNIST train, test)", fid(s["fid"])], ["images per side", f"{count(s['n_real'])} and {count(s['n_fake'])}"],
            ["network", p["network"]], ["resize", f"{p['resize']}, antialias {plain(p['antialias'])}"],
            ["uint8 conversion", p["uint8"]], ["weights sha256 (first 16 hex digits)", f"`{p['weights_sha256_16']}`"]]
    return table(["figure", "value"], rows) + "\n\n" + source("fid")


def _step_label(key: str) -> str:
    m = re.fullmatch(r"(.*)_batch(\d+)", key)
    return f"{m.group(1).replace('_', ' ')}, batch {m.group(2)}" if m else key.replace("_", " ")


def bf16_speed(d: dict) -> str:
    d = d["bf16_speed"]
    rows = [[_step_label(k), ms(v["ms_per_step_median"]["fp32"]), ms(v["ms_per_step_median"]["bf16"]), speedup(v["speedup"]),
             ", ".join(ms(x) for x in v["runs"]["fp32"]), ", ".join(ms(x) for x in v["runs"]["bf16"])]
            for k, v in d["steps"].items()]
    return (table(["training step", "fp32 ms (median)", "bf16 ms (median)", "speed-up", "fp32 runs", "bf16 runs"], rows)
            + f"\n\nCPU: {d['machine'].get('cpu', 'not recorded')}, {d['machine']['torch_threads']} threads. "
            + source("bf16_speed"))


def ict_bf16_signal(d: dict) -> str:
    d = d["ict_bf16_signal"]
    rows = []
    for n, by_precision in sorted(d["by_num_scales"].items(), key=lambda kv: int(kv[0])):
        for precision, e in by_precision.items():
            rows.append([count(int(n)), precision, rel_percent(e["d_rel_error_median"]), rel_percent(e["d_rel_error_p90"]),
                         rel_percent(e["loss_rel_error_median"])])
    return (table(["N", "precision", "error of the difference, median %", "p90 %", "error of the loss, median %"], rows)
            + f"\n\n{count(d['samples_per_n'])} samples per N, model: {d['model']}. " + source("ict_bf16_signal"))


def teacher_budget(d: dict) -> str:
    d = d["teacher_budget"]
    s = d["sampling"]
    rows = [["VAE stage", f"{count(d['vae_steps'])} steps at batch {d['vae_batch_size']}"],
            ["UNet stage", f"{count(d['unet_steps'])} steps at batch {d['unet_batch_size']}"],
            ["training wall time, s", f"{seconds(d['train_wall_s'])} ({d['train_wall_s'] / 60:.1f} min, "
                                      f"{d['invocations']} invocation)"],
            ["sampling, ms/image", f"{ms(1000 * s['s_per_image'])} ({s['steps']} steps, guidance {s['guidance']:.1f}, "
                                   f"{count(s['images'])} images)"],
            ["machine", f"{d['machine']['cpu_count']} CPU cores, {d['machine']['torch_threads']} torch threads"]]
    return table(["figure", "value"], rows) + "\n\n" + source("teacher_budget")


# ---------------------------------------------------------------- README

def readme_status(d: dict) -> str:
    ins, ict, cda, t, dmd = d["instaflow"], d["ict"], d["cda"], d["trainer_overhead"], d["dmd"]
    teacher = _seeded(ins["rows"], "teacher")
    rf_goal, rf_ok = goal_flag(ins["goals"], r"within_(\d+(?:\.\d+)?)x")
    ict_goal, ict_ok = goal_flag(ict["goals"], r"^1step_within_(\d+(?:\.\d+)?)x$")
    cda_goal, cda_ok = goal_flag(cda["goals"], r"at_least_(\d+(?:\.\d+)?)$")
    rows = [
        ["`studio/` training loop", f"s/step against a bare PyTorch loop: **{ratio(t['median_ratio'])}** (goal {t['goal']})",
         "[training](docs/training.md)"],
        ["`studio/teacher/` latent diffusion teacher",
         f"25-step FID **{fid(teacher['fid'])}** against the test set (N = {count(teacher['n'])})",
         "[teacher](docs/teacher.md)"],
        ["`distill/reflow/` InstaFlow", f"1-step student FID / 25-step teacher FID: **{ratio(ins['goals']['student_vs_teacher_fid'])}** "
                                       f"(goal {rf_goal}, {met(rf_ok)})", "[reflow](docs/reflow.md)"],
        ["`distill/dmd/` DMD2", f"best 1-step FID / 25-step teacher FID: **{ratio(dmd['goals']['best_fid_vs_teacher_25step'])}** "
                                f"(goal 1.0, {met(dmd['goals']['teacher_parity'])})", "[dmd](docs/dmd.md)"],
        ["`consistency/` iCT", f"1-step FID / same-budget DDPM FID: **{ratio(ict['goals']['ict_1step_vs_diffusion'])}** "
                               f"(goal {ict_goal}, {met(ict_ok)} on a CPU budget)", "[ict](docs/ict.md)"],
        ["`distill/cda/` CDA", f"top-1 at IPC 10 after {count(cda['settings']['iterations'])} recovery iterations: "
                               f"**{top1(cda['goals']['cda_ipc10_top1'])} %** (goal {cda_goal} %, {met(cda_ok)})",
         "[cda](docs/cda.md)"],
        ["`studio/fid/` FID", f"images/s against a bare torchmetrics loop: **{speedup(d['fid']['median_speedup'])}**, "
                              f"FID equal to {d['fid']['max_fid_rel_diff']:.1e} relative", "[fid](docs/fid.md)"],
        ["`ui/` Gradio app", f"one-step student per image: **{speedup(ins['goals']['student_speedup_vs_teacher_25step'])}** "
                             f"faster than the 25-step teacher", "[app](docs/app.md)"],
    ]
    return table(["part", "headline figure", "page"], rows) + "\n\n" + \
        source("trainer_overhead", "instaflow", "dmd", "ict", "cda", "fid")


def sd_levers(d: dict) -> str:
    d = d["sd_scale"]
    rows = [[name, count(r["trained_parameters"]), f"{r['peak_rss_gb']:.1f}", ratio(r["peak_ratio_vs_full"]),
             seconds(r["seconds_per_step"]), ratio(r["time_ratio_vs_full"])] for name, r in d["train_rows"].items()]
    goal = d["goals"]["lora_ckpt_peak_at_most_0.30_of_full"]
    return (table(["`reflow train` at batch 1", "trained parameters", "peak resident GB", "peak / full",
                   "s per step", "time / full"], rows)
            + f"\n\n`{d['preset']}` preset at {d['resolution']}x{d['resolution']}, CPU, each row in its own process; "
              f"s per step: median of the steps after the first. Goal LoRA + checkpointing peak at most 0.30 of the "
              f"full default: {ratio(goal)}, {met(goal <= 0.30)}. " + source("sd_scale"))


def sd_speed(d: dict) -> str:
    d = d["sd_scale"]
    p, s, c = d["pairs_speed"], d["student_speed"], d["chain"]
    rows = [["`reflow pairs` sampler vs plain `StableDiffusionPipeline(output_type=\"latent\")`",
             f"{p['studio_pairs_per_s']:.3f} vs {p['plain_diffusers_pairs_per_s']:.3f} pairs/s", ratio(p["ratio"]),
             f"at least 1.0: {met(p['ratio'] >= 1.0)}", f"{p['max_abs_latent_difference']:.1e}"],
            ["one-step student image vs bare text encoder + UNet + VAE decode",
             f"{ms(1000 * s['studio_seconds_per_image'])} vs {ms(1000 * s['bare_calls_seconds_per_image'])} ms",
             ratio(s["ratio"]), f"at most 1.10: {met(s['ratio'] <= 1.10)}", f"{s['max_abs_image_difference']:.1e}"]]
    chain = ", ".join(f"{k} {seconds(v)} s" for k, v in c["seconds"].items())
    return (table(["comparison (same process, alternated)", "figures", "ratio", "goal", "max abs difference"], rows)
            + f"\n\nMedians of {p['repeats']} repeats; pairs: {p['pairs']} prompts, {p['steps']} {p['solver']} steps, "
              f"guidance {p['guidance']}. The whole chain through the CLI: {chain}; the plain-diffusers one-step image "
              f"differs from `studio sample`'s by at most {c['plain_diffusers_vs_studio_sample_max_abs']:.1e}. "
            + source("sd_scale"))


def sd_memory(d: dict) -> str:
    m = d["sd_scale"]["memory_model"]
    rows = [[name, f"{r['static_gb']:.1f}", f"{r['activations_gb_per_sample']:.2f}", f"{r['batch_1_gb']:.1f}",
             f"{r['batch_4_gb']:.1f}", f"{r['batch_8_gb']:.1f}"] for name, r in m["rows"].items()]
    return (table(["lever set", "static GB", "activations GB per sample", "batch 1 GB", "batch 4 GB", "batch 8 GB"],
                  rows)
            + f"\n\nProjected peak GPU memory of one `reflow train` or `reflow distill` (l2/huber) step of SD 1.5 at "
              f"{m['target_resolution']}x{m['target_resolution']}, from activations measured at "
              f"{m['measured_resolution']}x{m['measured_resolution']}: {m['assumptions']}. Check of the scaling, "
              f"independent of the allocator: the UNet's forward saves for the backward pass (float32, batch 1) "
              + "; ".join(f"{k} {v:.3f} GB" for k, v in d["sd_scale"]["saved_tensors"]
                          ["saved_for_backward_gb_float32_batch_1"].items())
              + ". " + source("sd_scale"))


def sd_cards(d: dict) -> str:
    m = d["sd_scale"]["memory_model"]
    rows = [[card, "; ".join(f["batch_1"]) or "none", "; ".join(f["batch_4"]) or "none"] for card, f in m["fits"].items()]
    return (table(["card", "lever sets that fit at batch 1", "at batch 4"], rows)
            + "\n\nFrom the projection above (SD 1.5, 512x512, bf16 autocast). " + source("sd_scale"))


SD_SETUPS = (("one 24 GB card, `reflow train` / `reflow distill`", "LoRA 64 + checkpointing + bf16 frozen + CPU EMA", 8),
             ("8x80 GB, per GPU, full fine-tuning", "full default", 8),
             ("8x80 GB, per GPU, full fine-tuning + checkpointing", "+ gradient checkpointing", 8))


def sd_setups(d: dict) -> str:
    rows = d["sd_scale"]["memory_model"]["rows"]
    return (table(["setup (the commands below)", "lever set", "batch per GPU", "projected peak GB"],
                  [[what, lever, b, f"{rows[lever][f'batch_{b}_gb']:.1f}"] for what, lever, b in SD_SETUPS])
            + "\n\n" + source("sd_scale"))


# ---------------------------------------------------------------- every metric (benchmarks/rescore.py)

def kid_pm(r: dict) -> str:
    return f"{r['kid']:.4f} ± {r['kid_std']:.4f}"


def _metric_cells(r: dict) -> list:
    return [fid(r["fid"]), kid_pm(r), f"{r['precision']:.3f}", f"{r['recall']:.3f}", top1(r["agreement"])]


METRIC_HEADER = ["FID", "KID ± std", "precision", "recall", "class agreement, %"]


def instaflow_metrics(d: dict) -> str:
    d = d["instaflow"]
    if any("precision" not in r or "agreement" not in r for r in d["rows"]):
        raise TablesError("instaflow.json: rows without KID, precision/recall or class agreement; rerun "
                          "python benchmarks/instaflow.py (its FIDs are cached)")
    rows = [[r["name"], r["steps"], f"{r['guidance']:.1f}", count(r["n"]), *_metric_cells(r)] for r in d["rows"]]
    judge = d["judge"]
    return (table(["model", "steps", "guidance", "N", *METRIC_HEADER], rows)
            + "\n\nAgainst all 10,000 test images; the median over the row's noise seeds, as its FID. Class "
            f"agreement: judged by a {judge['arch']} (width {judge['width']}, {judge['resolution']}x"
            f"{judge['resolution']}, weights sha256 {judge['sha256_16']}...) whose own test top-1 is "
            f"{top1(judge['test_top1'])} %." + "\n\n" + source("instaflow"))


def rescore_cda(d: dict) -> str:
    d = d["rescore"]
    rows = [[r["name"], count(r["images"]), *_metric_cells(r)] for r in d["cda"]]
    return (table(["image set", "images", *METRIC_HEADER], rows)
            + f"\n\nAgainst all {count(d['cda'][0]['n_real'])} test images (32x32); the sets are 28x28. Judge: "
            f"test top-1 {top1(d['judge']['test_top1'])} %." + "\n\n" + source("rescore"))


# ---------------------------------------------------------------- DMD2

def dmd_curve(d: dict) -> str:
    """One row per generator-step count, one column per run: FID (KID) at the curve's N; then each run's
    training seconds."""
    curves = d["dmd"]["curves"]
    steps = sorted({p["generator_steps"] for c in curves.values() for p in c})
    cell = {(run, p["generator_steps"]): f"{fid(p['fid'])} ({p['kid']:.4f})" for run, c in curves.items() for p in c}
    rows = [[count(g), *(cell.get((run, g), "-") for run in curves)] for g in steps]
    rows.append(["training, s", *(seconds(d["dmd"]["train_seconds"][run]) for run in curves)])
    n = {p["n"] for c in curves.values() for p in c}
    return (table(["generator steps", *(f"`{run}`" for run in curves)], rows)
            + f"\n\nFID (KID) at N = {plain(sorted(n))}, seed 0. " + source("dmd"))


def dmd_rows(d: dict) -> str:
    """The teacher's 25-step goal row, then each DMD2 run's final 1-step row at N = --n-main."""
    rows = [[r["name"], r["steps"], count(r["n"]), *_metric_cells(r), ms(r["ms_per_image"]),
             seconds(r["train_s"]) if "train_s" in r else "-", ", ".join(fid(v) for v in r.get("fid_runs", [])) or "-"]
            for r in d["dmd"]["rows"]]
    return (table(["model", "steps", "N", *METRIC_HEADER, "ms/image", "training, s", "FID of each seed run"], rows)
            + "\n\nFID of the rows with seed runs: their median; the other rows: seed 0. " + source("dmd"))


def dmd_goals(d: dict) -> str:
    """Teacher parity: the best DMD2 student's median 1-step FID over the teacher's median 25-step FID."""
    d = d["dmd"]
    g, teacher = d["goals"], d["rows"][0]
    best = next(r for r in d["rows"] if r["name"] == g["best"])
    per_seed = ", ".join(ratio(s / t) for s, t in zip(best["fid_runs"], teacher["fid_runs"]))
    rows = [[f"best DMD2 student ({best['name']}) 1-step FID / teacher 25-step FID (medians over seed runs)",
             ratio(g["best_fid_vs_teacher_25step"]), f"at most 1.000: {met(g['teacher_parity'])}"],
            ["the same ratio, seed by seed", per_seed, ""],
            ["its speed-up over the 25-step teacher with CFG (ms/image)", speedup(g["speedup_vs_teacher_25step"]), ""]]
    return table(["figure", "value", "goal"], rows) + "\n\n" + source("dmd")


# ---------------------------------------------------------------- registry

TABLES = {
    "readme.status": (("trainer_overhead", "instaflow", "dmd", "ict", "cda", "fid"), readme_status),
    "instaflow.rows": (("instaflow",), instaflow_rows),
    "instaflow.guidance": (("instaflow",), instaflow_guidance),
    "instaflow.goals": (("instaflow",), instaflow_goals),
    "instaflow.straightness": (("instaflow",), instaflow_straightness),
    "instaflow.output_sign": (("instaflow",), instaflow_output_sign),
    "instaflow.stage_seconds": (("instaflow",), instaflow_stage_seconds),
    "instaflow.metrics": (("instaflow",), instaflow_metrics),
    "dmd.curve": (("dmd",), dmd_curve),
    "dmd.rows": (("dmd",), dmd_rows),
    "dmd.goals": (("dmd",), dmd_goals),
    "rescore.cda": (("rescore",), rescore_cda),
    "ict.rows": (("ict",), ict_rows),
    "ict.goals": (("ict",), ict_goals),
    "ict.budget": (("ict",), ict_budget),
    "ect.rows": (("ect",), ect_rows),
    "ect.sweep": (("ect",), ect_sweep),
    "ect.goals": (("ect",), ect_goals),
    "ect.totals": (("ect", "ict"), ect_totals),
    "ict_fixes.rows": (("ict_fixes", "ict"), ict_fixes_rows),
    "ict_fixes.ab": (("ict_fixes",), ict_fixes_ab),
    "teacher_quality.vae": (("teacher_quality",), teacher_quality_vae),
    "teacher_quality.unet": (("teacher_quality",), teacher_quality_unet),
    "teacher_quality.sweep": (("teacher_quality",), teacher_quality_sweep),
    "cda.setup": (("cda",), cda_setup("cda")),
    "cda.top1": (("cda",), cda_top1("cda")),
    "cda.compare": (("cda",), cda_compare("cda")),
    "cda.goals": (("cda",), cda_goals("cda")),
    "cda.recovery_speed": (("cda",), cda_recovery_speed("cda")),
    "cda_it500.top1": (("cda_it500",), cda_top1("cda_it500")),
    "cda_it500.compare": (("cda_it500",), cda_compare("cda_it500")),
    "cda_it500.goals": (("cda_it500",), cda_goals("cda_it500")),
    "cda_it500.recovery_speed": (("cda_it500",), cda_recovery_speed("cda_it500")),
    "trainer_overhead.repeats": (("trainer_overhead",), trainer_overhead),
    "fid.speed": (("fid",), fid_speed),
    "fid.sanity": (("fid",), fid_sanity),
    "bf16_speed.steps": (("bf16_speed",), bf16_speed),
    "ict_bf16_signal.errors": (("ict_bf16_signal",), ict_bf16_signal),
    "teacher_budget.summary": (("teacher_budget",), teacher_budget),
    "sd_scale.levers": (("sd_scale",), sd_levers),
    "sd_scale.speed": (("sd_scale",), sd_speed),
    "sd_scale.memory": (("sd_scale",), sd_memory),
    "sd_scale.cards": (("sd_scale",), sd_cards),
    "sd_scale.setups": (("sd_scale",), sd_setups),
}


class Results:
    """The JSON files of a results folder, each read once."""

    def __init__(self, folder: Path):
        self.folder, self._cache = Path(folder), {}

    def get(self, stems) -> dict:
        out = {}
        for stem in stems:
            if stem not in self._cache:
                path = self.folder / f"{stem}.json"
                if not path.is_file():
                    raise TablesError(f"{path} does not exist")
                try:
                    self._cache[stem] = json.loads(path.read_text())
                except json.JSONDecodeError as e:
                    raise TablesError(f"{path} is not valid JSON: {e}") from None
            out[stem] = self._cache[stem]
        return out


def build(name: str, results: Results) -> str:
    if name not in TABLES:
        raise TablesError(f"unknown table {name!r} (known: {', '.join(TABLES)})")
    stems, builder = TABLES[name]
    try:
        return builder(results.get(stems))
    except (KeyError, TypeError, ValueError, IndexError) as e:
        raise TablesError(f"table {name}: the results of {', '.join(stems)} lack what it needs ({e!r})") from None


def render(text: str, results: Results, page: str = "page") -> tuple[str, list[str], list[str]]:
    """(new text, table names, stale table names) of one page."""
    regions = list(REGION.finditer(text))
    if len(regions) != len(BEGIN.findall(text)):
        raise TablesError(f"{page}: a '<!-- table: NAME -->' line has no '<!-- /table -->' after it")
    names, stale, pieces, last = [], [], [], 0
    for m in regions:
        name, body = m.group("name"), m.group("body")
        if BEGIN.search(body):
            raise TablesError(f"{page}: table {name} holds another table marker")
        new = build(name, results).rstrip("\n") + "\n"
        names.append(name)
        if new != body:
            stale.append(name)
        pieces += [text[last:m.start("body")], new]
        last = m.end("body")
    pieces.append(text[last:])
    return "".join(pieces), names, stale


def pages(docs: Path, readme: Path | None) -> list[Path]:
    found = sorted(Path(docs).glob("*.md"))
    if readme is not None and Path(readme).is_file():
        found.append(Path(readme))
    return found


def update(docs: Path = DOCS, results: Path = RESULTS, readme: Path | None = README,
           write: bool = False) -> tuple[list[str], list[str]]:
    """Render every page; with ``write`` rewrite the stale ones. Returns (stale 'page: table'
    entries, every table name used)."""
    res, stale, used = Results(results), [], []
    for path in pages(docs, readme):
        text = path.read_text()
        new, names, old = render(text, res, str(path))
        used += names
        stale += [f"{_show(path)}: {n}" for n in old]
        if write and new != text:
            path.write_text(new)
    return stale, used


def check(docs: Path = DOCS, results: Path = RESULTS, readme: Path | None = README) -> list[str]:
    """The stale tables ('page: table'); changes nothing."""
    return update(docs, results, readme, write=False)[0]


def rewrite(docs: Path = DOCS, results: Path = RESULTS, readme: Path | None = README) -> list[str]:
    """Rewrite every stale table in place; returns what was stale."""
    return update(docs, results, readme, write=True)[0]


def _show(path: Path) -> str:
    try:
        return str(Path(path).resolve().relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--check", action="store_true", help="change nothing; exit 1 if a table is out of date")
    p.add_argument("--docs", type=Path, default=DOCS, help="folder of the Markdown pages (default: docs/)")
    p.add_argument("--results", type=Path, default=RESULTS, help="folder of the JSON results")
    p.add_argument("--readme", type=Path, default=README, help="also this page (default: README.md)")
    p.add_argument("--no-readme", action="store_true", help="leave the README out")
    a = p.parse_args(argv)
    readme = None if a.no_readme else a.readme
    try:
        stale, used = update(a.docs, a.results, readme, write=not a.check)
    except TablesError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if a.check:
        for entry in stale:
            print(f"stale: {entry}")
        if stale:
            print(f"{len(stale)} of {len(used)} generated tables are out of date; run python benchmarks/tables.py")
            return 1
        print(f"all {len(used)} generated tables are up to date")
        return 0
    for entry in stale:
        print(f"rewrote {entry}")
    print(f"{len(stale)} of {len(used)} generated tables rewritten")
    return 0


if __name__ == "__main__":
    sys.exit(main())
