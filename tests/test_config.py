from dataclasses import dataclass, field

import pytest

from genact.config import ConfigError, load_config, save_config


@dataclass
class Optim:
    lr: float = 2e-5
    betas: tuple[float, float] = (0.9, 0.98)


@dataclass
class Run:
    name: str = "rest"
    epochs: int = 60
    layers: list[int] | None = None
    bf16: bool = True
    optim: Optim = field(default_factory=Optim)


def test_yaml_then_overrides_with_types_checked(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text("epochs: 30\noptim:\n  lr: 1.0e-4\n")
    cfg = load_config(Run, path, ["optim.lr=3e-5", "layers=[0, 2]", "bf16=false", "name=ablation"])
    assert cfg == Run(name="ablation", epochs=30, layers=[0, 2], bf16=False, optim=Optim(lr=3e-5))
    assert load_config(Run, None, ["layers=null"]).layers is None
    save_config(cfg, tmp_path / "saved.yaml")
    assert load_config(Run, tmp_path / "saved.yaml") == cfg


@pytest.mark.parametrize("override,message", [
    ("epoch=3", "unknown key"), ("epochs=many", "not of type int"), ("optim.lr=[1]", "not of type float"),
    ("bf16=1", "not of type bool"), ("epochs", "not key=value"),
])
def test_bad_overrides_fail_before_the_run(override, message):
    with pytest.raises(ConfigError, match=message):
        load_config(Run, None, [override])
