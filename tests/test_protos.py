"""The checked-in generated code is exactly what protos/generate.py produces now."""

import importlib.util

from tests.conftest import REPO


def test_generated_code_is_fresh(tmp_path):
    spec = importlib.util.spec_from_file_location("generate", REPO / "protos" / "generate.py")
    generate = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(generate)
    generate.generate(tmp_path / "gen")
    checked_in = REPO / "agent" / "gen"
    fresh = {p.relative_to(tmp_path / "gen"): p.read_text() for p in (tmp_path / "gen").rglob("*.py*")}
    current = {p.relative_to(checked_in): p.read_text() for p in checked_in.rglob("*.py*") if "__pycache__" not in p.parts}
    assert sorted(fresh) == sorted(current), "files differ: run `make protos`"
    stale = [str(name) for name in fresh if fresh[name] != current[name]]
    assert not stale, f"stale generated code, run `make protos`: {stale}"
