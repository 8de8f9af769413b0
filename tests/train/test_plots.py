import numpy as np
import pytest

from eqv2.train.plots import learning_curves, parity_plots


def test_plots_are_png(tmp_path):
    log = tmp_path / "log.csv"
    log.write_text(
        "step,loss,energy_loss,force_loss,val_energy_mae,val_force_mae\n"
        "1,2.0,1.0,1.0,,\n2,1.0,0.5,0.5,0.3,0.2\n"
    )
    out = learning_curves(log, tmp_path / "curves.png")
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    rng = np.random.default_rng(0)
    f = rng.normal(size=(10, 3))
    out = parity_plots([1, 2, 3], [1.1, 2.0, 2.9], f, f + 0.01, tmp_path / "parity.png")
    assert out.read_bytes()[:4] == b"\x89PNG"


def test_empty_log_is_an_error(tmp_path):
    log = tmp_path / "log.csv"
    log.write_text("step,loss\n")
    with pytest.raises(ValueError, match="no rows"):
        learning_curves(log, tmp_path / "x.png")
