"""Files are replaced whole or not at all."""

import pytest

from agent.atomic import replacing, write_text


def test_a_failed_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path):
    path = tmp_path / "report.json"
    write_text(path, "old")
    with pytest.raises(RuntimeError):
        with replacing(path) as tmp:
            tmp.write_text("half of the new")
            raise RuntimeError("interrupted")
    assert path.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report.json"]


def test_a_completed_write_replaces_the_file(tmp_path):
    path = tmp_path / "model.gguf"
    with replacing(path) as tmp:
        assert tmp != path and tmp.parent == path.parent
        tmp.write_bytes(b"new")
        assert not path.exists()  # nothing under the real name until the block completes
    assert path.read_bytes() == b"new"
    assert write_text(path, "again") == path and path.read_text() == "again"
