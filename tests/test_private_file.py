"""Operator files (scopes, certificates, reports, exports) are 0600 and never follow a link."""

from __future__ import annotations

import os
import stat

import pytest

from labvault.private_file import open_private, write_private


def mode(path) -> int:
    return stat.S_IMODE(os.lstat(path).st_mode)


def test_new_file_is_owner_only_whatever_the_umask(tmp_path) -> None:
    old = os.umask(0)
    try:
        write_private(tmp_path / "a.json", "{}\n")
        write_private(tmp_path / "b.bin", b"\x00\x01")
    finally:
        os.umask(old)
    assert mode(tmp_path / "a.json") == 0o600
    assert (tmp_path / "a.json").read_text() == "{}\n"
    assert mode(tmp_path / "b.bin") == 0o600
    assert (tmp_path / "b.bin").read_bytes() == b"\x00\x01"


def test_an_existing_readable_file_is_truncated_and_made_private(tmp_path) -> None:
    path = tmp_path / "report.html"
    path.write_text("an older, longer report that must not survive")
    path.chmod(0o644)
    with open_private(path) as f:
        f.write("new")
    assert mode(path) == 0o600
    assert path.read_text() == "new"


def test_a_symbolic_link_is_refused_and_its_target_untouched(tmp_path) -> None:
    target = tmp_path / "elsewhere"
    target.write_text("keep")
    target.chmod(0o644)
    (tmp_path / "out.json").symlink_to(target)
    with pytest.raises(OSError):
        write_private(tmp_path / "out.json", "scope")
    assert target.read_text() == "keep"
    assert mode(target) == 0o644


def test_publishing_creates_whole_or_nothing_and_never_replaces(tmp_path) -> None:
    from labvault.private_file import publish_private

    old = os.umask(0)
    try:
        publish_private(tmp_path / "letters.html", "<p>un courrier</p>")
    finally:
        os.umask(old)
    assert mode(tmp_path / "letters.html") == 0o600
    assert (tmp_path / "letters.html").read_text() == "<p>un courrier</p>"
    with pytest.raises(FileExistsError):
        publish_private(tmp_path / "letters.html", "another")
    (tmp_path / "link.html").symlink_to(tmp_path / "elsewhere.html")
    with pytest.raises(FileExistsError):
        publish_private(tmp_path / "link.html", "through a link")
    assert not (tmp_path / "elsewhere.html").exists()
    assert (tmp_path / "letters.html").read_text() == "<p>un courrier</p>"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["letters.html", "link.html"]
