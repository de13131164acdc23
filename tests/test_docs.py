"""The README's layer table and the per-op formulas are generated from the registry."""

from __future__ import annotations

import pytest

from archcalc import docs
from archcalc.ops import REGISTRY


@pytest.mark.parametrize("name", sorted(docs.TARGETS))
def test_committed_docs_equal_the_generated(name):
    text = (docs.ROOT / name).read_text(encoding="utf-8")
    assert docs.regenerate_all(name, text) == text, "run python -m archcalc.docs"


def test_every_preset_is_documented_with_every_op_type():
    from archcalc.conventions import presets

    table, sections = docs.presets_table(), docs.preset_sections()
    for name in presets():
        assert f"[`{name}`](docs/conventions.md#convention-{name})" in table
        section = sections.split(f'<a id="convention-{name}"></a>')[1].split('<a id="convention-')[0]
        for op_type in REGISTRY:
            assert f"| `{op_type}` |" in section, (name, op_type)


def test_every_op_and_attribute_is_documented():
    table, formulas = docs.layer_table(), docs.op_formulas()
    for op_type, op in REGISTRY.items():
        assert f"| `{op_type}` |" in table and f"### `{op_type}`" in formulas
        for attr in op.attrs:
            assert f"`{attr.name}`" in table.split(f"| `{op_type}` |")[1].split("\n")[0], (op_type, attr.name)


def test_a_changed_op_makes_the_docs_stale(monkeypatch):
    text = (docs.ROOT / "README.md").read_text(encoding="utf-8")
    monkeypatch.setattr(type(REGISTRY["relu"]), "__doc__", "max(x, 0), said differently.")
    assert docs.regenerate(text, docs.layer_table(), "README.md") != text


def test_markers_are_required():
    with pytest.raises(ValueError, match="one pair of generated-text markers"):
        docs.regenerate("no markers here", "x", "README.md")
