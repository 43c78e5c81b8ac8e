"""The scripts in examples/ run and say what their text says."""

import os
import runpy

import pytest

EXAMPLES = os.path.join(os.path.dirname(__file__), os.pardir, "examples")


@pytest.mark.slow
def test_mlp_training_script_trains_and_resumes_bitwise(capsys):
    pytest.importorskip("sklearn")
    runpy.run_path(os.path.join(EXAMPLES, "train_mlp_digits.py"), run_name="__main__")
    out = capsys.readouterr().out
    accuracy = float(out.split("test accuracy ")[1].split()[0])
    assert accuracy > 0.9
    assert "after 420 steps" in out
    assert "the same weights bit for bit: True" in out
