"""`vehicle-agent-toolchain clean-cache`: the stage cache goes, the model stays."""

from agent.toolchain.cli import main
from tests.conftest import REPO

RECIPE = str(REPO / "models" / "recipes" / "tiny.yaml")


def test_clean_cache_deletes_the_stage_cache_and_keeps_the_model(tmp_path, capsys):
    built = tmp_path / "tiny"
    (built / "cache").mkdir(parents=True)
    (built / "cache" / "finetuned-0123.gguf").write_bytes(b"x" * 4096)
    (built / "tiny.gguf").write_bytes(b"model")
    assert main(["clean-cache", "--recipe", RECIPE, "--out", str(tmp_path)]) == 0
    assert not (built / "cache").exists() and (built / "tiny.gguf").read_bytes() == b"model"
    assert "deleted" in capsys.readouterr().out
    assert main(["clean-cache", "--recipe", RECIPE, "--out", str(tmp_path)]) == 0  # again: nothing to do
    assert "nothing to delete" in capsys.readouterr().out


def test_clean_cache_refuses_a_bad_recipe(tmp_path, capsys):
    (tmp_path / "bad.yaml").write_text("no_such_stage: {}\n")
    (tmp_path / "bad" / "cache").mkdir(parents=True)
    assert main(["clean-cache", "--recipe", str(tmp_path / "bad.yaml"), "--out", str(tmp_path)]) == 2
    assert "unknown recipe key" in capsys.readouterr().err and (tmp_path / "bad" / "cache").is_dir()
