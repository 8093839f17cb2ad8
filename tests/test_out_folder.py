"""`--out`: a path that is a file, or lies under one, is one sentence and exit 2 before any data is read."""
import pytest

from mmhal.cli import main


@pytest.mark.parametrize("command", ["run", "tune"])
def test_out_that_is_a_file_or_lies_under_one_is_one_sentence_and_exit_2(tmp_path, capsys, command):
    afile = tmp_path / "notes.txt"
    afile.write_text("the user's own file")
    for out, words in [(afile, "is a file"), (afile / "run", f"lies under '{afile}', which is a file")]:
        code = main([command, "--out", str(out), "--epochs", "1", "--seeds", "1", "--no-progress"])
        err = capsys.readouterr().err
        assert code == 2, err
        lines = err.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("mmhal: error: --out") and words in lines[0], err
    assert afile.read_text() == "the user's own file"
