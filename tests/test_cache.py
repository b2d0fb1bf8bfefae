"""`brachymc cache info | clear`: lists brachymc's cache entries by kind and removes only those."""

from __future__ import annotations

from brachymc.cache import cache_entries
from brachymc.cli import main


def _fill(folder):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "physics-0123456789abcdef0123.h5").write_bytes(b"\0" * 2000)
    (folder / "sk-oncoseed_6711-abcdef.json").write_text("{}")
    (folder / "kernels" / "cpu-abc").mkdir(parents=True)
    (folder / "kernels" / "cpu-abc" / "libbmc.so").write_bytes(b"\0" * 500)
    (folder / "my-notes.txt").write_text("not brachymc's")


def test_cache_info_and_clear(tmp_path, monkeypatch, capsys):
    folder = tmp_path / "cache"
    monkeypatch.setenv("BRACHYMC_CACHE_DIR", str(folder))
    assert main(["cache", "info"]) == 0
    assert "does not exist yet" in capsys.readouterr().out
    _fill(folder)
    assert main(["cache", "info"]) == 0
    out = capsys.readouterr().out
    assert str(folder) in out
    lines = {ln.split()[0]: ln for ln in out.splitlines()[2:]}
    assert "1 entries" in lines["physics"] and "2.0 kB" in lines["physics"]
    assert "1 entries" in lines["sk"] and "1 entries" in lines["kernels"] and "3 entries" in lines["total"]
    assert main(["cache", "clear", "--kind", "sk"]) == 0
    assert "removed 1 entries" in capsys.readouterr().out
    assert {e.kind for e in cache_entries(folder)} == {"physics", "kernels"}
    assert main(["cache", "clear"]) == 0
    assert cache_entries(folder) == [] and (folder / "my-notes.txt").is_file()    # other files are left alone
