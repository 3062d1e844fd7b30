"""Files the mesh replaces are either the old one or the new one, never half, and leave nothing behind."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from mesh.files import replace_file


def test_a_write_that_fails_leaves_the_old_file_and_no_temporary(tmp_path: Path) -> None:
    target = tmp_path / "manifest.json"
    target.write_text("old")

    def half_then_fail(tmp: Path) -> None:
        tmp.write_text("new but half")
        raise OSError(28, "No space left on device")

    with pytest.raises(OSError, match="No space left"):
        replace_file(target, half_then_fail)
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["manifest.json"]


@pytest.mark.parametrize(
    "content", [b"bytes \x00\xff", "text é", lambda p: p.write_text("written")]
)
def test_bytes_text_or_a_writer_replace_the_file_whole(tmp_path: Path, content: object) -> None:
    target = tmp_path / "deep" / "file.bin"
    replace_file(target, content, durable=False)  # type: ignore[arg-type]
    expected = {bytes: content, str: str(content).encode()}.get(type(content), b"written")
    assert target.read_bytes() == expected
    assert [p.name for p in target.parent.iterdir()] == ["file.bin"]


def test_a_secret_is_never_readable_by_others_even_while_written(tmp_path: Path) -> None:
    target = tmp_path / "registry.json"
    seen: list[int] = []

    class Watching(bytes):
        pass

    replace_file(target, Watching(b"{}"), mode=0o600)
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    seen.append(stat.S_IMODE(target.stat().st_mode))
    replace_file(target, lambda p: p.write_text("{}"), mode=0o600)
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
