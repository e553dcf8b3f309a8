"""The docs: generated tables are current, the check can fail, the README is short, links resolve.

Standard library only (no torch), so these run in about a second.
"""

from __future__ import annotations

import ast
import importlib.util
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "benchmarks" / "tables.py"
README = ROOT / "README.md"
DOCS = ROOT / "docs"
RESULTS = ROOT / "benchmarks" / "results"


def _load_tables():
    spec = importlib.util.spec_from_file_location("studio_docs_tables", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


tables = _load_tables()


def _pages() -> list[Path]:
    return [README, *sorted(DOCS.glob("*.md"))]


# ------------------------------------------------------------------ generated tables

def test_generated_tables_are_up_to_date():
    stale = tables.check(DOCS, RESULTS, README)
    assert not stale, ("stale generated tables (run `python benchmarks/tables.py`): " + ", ".join(stale))


def test_every_registered_table_appears_in_a_page():
    _, used = tables.update(DOCS, RESULTS, README, write=False)
    assert set(tables.TABLES) - set(used) == set()


def _copy(tmp_path: Path) -> tuple[Path, Path]:
    docs, results = tmp_path / "docs", tmp_path / "results"
    docs.mkdir()
    results.mkdir()
    shutil.copy(DOCS / "reflow.md", docs / "reflow.md")
    shutil.copy(RESULTS / "instaflow.json", results / "instaflow.json")
    return docs, results


def _outside_markers(text: str) -> str:
    return tables.REGION.sub("", text)


def test_check_reports_a_changed_figure_and_rewrite_fixes_it(tmp_path):
    docs, results = _copy(tmp_path)
    assert tables.check(docs, results, None) == []

    path = results / "instaflow.json"
    data = json.loads(path.read_text())
    data["rows"][0]["fid"] = 12.3456
    path.write_text(json.dumps(data))
    before = (docs / "reflow.md").read_text()

    stale = tables.check(docs, results, None)
    assert any(entry.endswith("reflow.md: instaflow.rows") for entry in stale), stale
    assert (docs / "reflow.md").read_text() == before  # check changes nothing

    tables.rewrite(docs, results, None)
    after = (docs / "reflow.md").read_text()
    assert tables.check(docs, results, None) == []
    assert "| 12.35 |" in after and "| 49.17 |" not in after.split("<!-- table: instaflow.guidance -->")[0]
    assert _outside_markers(after) == _outside_markers(before)  # hand-written text is kept


def test_command_line_exit_codes(tmp_path):
    docs, results = _copy(tmp_path)

    def run(*args):
        return subprocess.run([sys.executable, str(SCRIPT), "--docs", str(docs), "--results", str(results),
                               "--no-readme", *args], capture_output=True, text=True, timeout=60)

    assert run("--check").returncode == 0
    data = json.loads((results / "instaflow.json").read_text())
    data["guidance_sweep"][1]["fid"] = 1.0
    (results / "instaflow.json").write_text(json.dumps(data))
    stale = run("--check")
    assert stale.returncode == 1 and "instaflow.guidance" in stale.stdout, stale.stdout + stale.stderr
    assert run().returncode == 0
    assert run("--check").returncode == 0


def test_unknown_table_and_unclosed_marker_are_errors(tmp_path):
    docs, results = _copy(tmp_path)
    page = docs / "reflow.md"
    page.write_text("<!-- table: no.such.table -->\n<!-- /table -->\n")
    with pytest.raises(tables.TablesError, match="unknown table"):
        tables.check(docs, results, None)
    page.write_text("<!-- table: instaflow.rows -->\nno end marker\n")
    with pytest.raises(tables.TablesError, match="no '<!-- /table -->'"):
        tables.check(docs, results, None)


def test_tables_script_uses_the_standard_library_only():
    tree = ast.parse(SCRIPT.read_text())
    imported = {alias.name.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.Import)
                for alias in node.names}
    imported |= {node.module.split(".")[0] for node in ast.walk(tree)
                 if isinstance(node, ast.ImportFrom) and node.module}
    assert imported <= {"__future__", "argparse", "json", "pathlib", "re", "sys"}, imported


# ------------------------------------------------------------------ README and links

def test_readme_is_at_most_200_lines():
    assert len(README.read_text().splitlines()) <= 200


FENCE = re.compile(r"^```.*?^```", re.M | re.S)
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")
HEADING = re.compile(r"^#{1,6}\s+(.*?)\s*#*\s*$", re.M)


def _anchors(page: Path) -> set[str]:
    """GitHub's heading anchors: lower case, punctuation dropped, spaces to hyphens, -1, -2 for repeats."""
    seen, out = {}, set()
    for title in HEADING.findall(FENCE.sub("", page.read_text())):
        slug = re.sub(r"[^\w\- ]", "", title.replace("`", "").lower()).replace(" ", "-")
        n = seen.get(slug, 0)
        seen[slug] = n + 1
        out.add(slug if n == 0 else f"{slug}-{n}")
    return out


def _links(page: Path) -> list[str]:
    return LINK.findall(FENCE.sub("", page.read_text()))


@pytest.mark.parametrize("page", _pages(), ids=lambda p: p.relative_to(ROOT).as_posix())
def test_relative_links_point_at_existing_files(page):
    broken = []
    for target in _links(page):
        if re.match(r"^[a-z][a-z0-9+.-]*:", target):  # http:, https:, mailto:
            continue
        path_part, _, anchor = target.partition("#")
        dest = (page.parent / path_part).resolve() if path_part else page
        if not dest.exists():
            broken.append(f"{target} (no such file)")
        elif anchor and dest.suffix == ".md" and anchor not in _anchors(dest):
            broken.append(f"{target} (no heading #{anchor} in {dest.name})")
    assert not broken, f"{page.relative_to(ROOT)}: " + "; ".join(broken)


def test_docs_has_one_page_per_method_and_core_piece():
    expected = {"teacher", "reflow", "ict", "cda", "fid", "app", "training", "benchmarks"}
    assert expected <= {p.stem for p in DOCS.glob("*.md")}
    readme = README.read_text()
    assert all(f"docs/{name}.md" in readme for name in expected)
