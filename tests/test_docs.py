"""Documentation consistency that the strict MkDocs build (``make docs``) cannot see: the README is a short landing
page whose links resolve, every ``docs/methods.md#anchor`` cited in a docstring exists, and no reference points to
notes a reader cannot open."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
METHODS = ROOT / "docs" / "methods.md"


def methods_anchors() -> set[str]:
    text = METHODS.read_text()
    return set(re.findall(r"\{#([\w-]+)\}", text)) | set(re.findall(r'<a id="([\w-]+)"></a>', text))


def test_readme_is_a_landing_page_with_working_links():
    text = (ROOT / "README.md").read_text()
    assert len(text.splitlines()) <= 250
    assert "make demo" in text and "make test" in text
    for target in re.findall(r"\]\(([^)\s]+)\)", text):
        if target.startswith(("http://", "https://")):
            continue
        path, _, anchor = target.partition("#")
        assert (ROOT / path).exists(), f"README links to a missing file: {target}"
        if path == "docs/methods.md" and anchor:
            assert anchor in methods_anchors(), f"README links to a missing methods anchor: {target}"


def test_methods_anchors_cited_in_code_exist():
    anchors = methods_anchors()
    assert {"nc1", "vci", "cdnv", "logme", "ncti", "finetuning", "pretraining", "li2024", "wang2023"} <= anchors
    cited = {}
    for path in list((ROOT / "src").rglob("*.py")) + list((ROOT / "benchmarks").glob("*.py")):
        for m in re.finditer(r"docs/methods\.md#([\w-]+)((?: #[\w-]+)*)", path.read_text()):
            for anchor in [m.group(1), *re.findall(r"#([\w-]+)", m.group(2))]:
                cited.setdefault(anchor, path.relative_to(ROOT))
    assert cited, "no docstring cites the methods page"
    missing = {a: str(p) for a, p in cited.items() if a not in anchors}
    assert not missing, f"docs/methods.md has no section for: {missing}"


def test_no_references_to_notes_a_reader_cannot_open():
    pattern = re.compile(r"paper 00[0-4]|spec(\.md)? section|spec [0-9]\.[0-9]|docs/[r]eadme")
    files = [ROOT / "README.md", *(ROOT / "docs").rglob("*.md"), *(ROOT / "src").rglob("*.py"),
             *(ROOT / "benchmarks").glob("*.py"), *(ROOT / "tests").glob("*.py")]
    hits = [f"{p.relative_to(ROOT)}:{i}" for p in files if p != Path(__file__)
            for i, line in enumerate(p.read_text().splitlines(), 1) if pattern.search(line)]
    assert not hits, hits
