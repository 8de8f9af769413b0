import pytest

from eqv2.train.run_config import apply_overrides, load_run_config, parse_run_config


def test_sections_and_overrides(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text(
        "model:\n  num_layers: 2\n  lmax_list: [3]\ntrain:\n  lr: 0.01\ndata:\n  train: a.xyz\n"
    )
    run = load_run_config(path, ["train.lr=1e-3", "model.num_layers=4", "data.val=b.xyz"])
    assert run.model.num_layers == 4 and run.model.lmax_list == [3]
    assert run.train.lr == pytest.approx(1e-3)
    assert run.data.train == "a.xyz" and run.data.val == "b.xyz"
    again = parse_run_config(run.to_dict())
    assert again.to_dict() == run.to_dict()


@pytest.mark.parametrize(
    ("raw", "match"),
    [
        ({"modle": {}}, "unknown key 'modle'. Did you mean 'model'"),
        ({"train": {"lrr": 1}}, r"\[train\]: unknown key 'lrr'. Did you mean 'lr'"),
        ({"model": {"num_layer": 2}}, r"\[model\]: .*'num_layer'.*'num_layers'"),
        ({"data": {"trian": "x"}}, r"\[data\]: unknown key 'trian'. Did you mean 'train'"),
        ({"train": {"max_steps": 0}}, "max_steps=0"),
    ],
)
def test_bad_keys_are_named(raw, match):
    with pytest.raises(ValueError, match=match):
        parse_run_config(raw, "run.yaml")


def test_bad_override_and_file(tmp_path):
    with pytest.raises(ValueError, match="section.key=value"):
        apply_overrides({}, ["lr=1"])
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_run_config(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("model: [unclosed\n")
    with pytest.raises(ValueError, match="not valid YAML"):
        load_run_config(bad)
