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


@pytest.mark.parametrize(
    "override,message",
    [
        ("epoch=3", "unknown key"),
        ("epochs=many", "not of type int"),
        ("optim.lr=[1]", "not of type float"),
        ("bf16=1", "not of type bool"),
        ("epochs", "not key=value"),
    ],
)
def test_bad_overrides_fail_before_the_run(override, message):
    with pytest.raises(ConfigError, match=message):
        load_config(Run, None, [override])


def test_shipped_configs_load_into_their_dataclasses():
    from pathlib import Path

    from genact.config import RestConfig, SupervisedConfig

    configs = Path(__file__).parents[1] / "configs"
    rest = load_config(RestConfig, configs / "rest_k400.yaml", ["rest.neighbours=1"])
    assert (
        rest.rest.neighbours,
        rest.rest.keep,
        rest.rest.epochs_per_round,
        rest.optim.epochs,
    ) == (1, 3, 10, 60)
    assert (
        rest.optim.betas == [0.9, 0.98]
        and rest.optim.lr == 2e-5
        and rest.optim.label_smoothing == 0.2
    )
    assert rest.rest.prompts == ["a video of", "a person is", "someone is"]
    sup = load_config(SupervisedConfig, configs / "supervised_k400.yaml")
    assert sup.data.format == "kinetics" and sup.run.dir == "runs/supervised_k400"


def test_regen_config_has_the_supplementary_settings():
    from pathlib import Path

    from genact.config import RegenConfig

    cfg = load_config(
        RegenConfig,
        Path(__file__).parents[1] / "configs" / "regen_k400.yaml",
        ["regen.w_grammar=0"],
    )
    assert (cfg.optim.lr, cfg.optim.min_lr, cfg.optim.weight_decay, cfg.optim.epochs) == (
        2.5e-6,
        2.5e-8,
        0.01,
        10,
    )
    assert (cfg.regen.samples, cfg.regen.w_cls, cfg.regen.w_grammar, cfg.regen.cls_form) == (
        5,
        1.0,
        0.0,
        "ce",
    )


def test_a_run_written_before_a_setting_existed_resumes_with_its_default(tmp_path):
    """A config.yaml from an earlier version lacks settings added since (rest.decoder,
    optim.freeze_video_encoder): they count as their defaults, which is what that
    version did; a saved value that differs is still refused."""
    import yaml

    from genact.config import RestConfig, load_config, save_config, to_dict
    from genact.errors import ConfigError
    from genact.training.run import check_run_dir
    from genact.training.rundir import RunDir

    run = RunDir(tmp_path / "run")
    cfg = load_config(RestConfig, None, [f"run.dir={run.path}", "run.resume=auto"])
    save_config(cfg, run.config)
    run.write_videos(["a.mp4"])
    older = to_dict(cfg)
    del older["rest"]["decoder"], older["optim"]["freeze_video_encoder"]
    run.config.write_text(yaml.safe_dump(older))
    check_run_dir(cfg)  # resumes
    changed = load_config(
        RestConfig, None, [f"run.dir={run.path}", "run.resume=auto", "rest.decoder=transformers"]
    )
    (run.path / "checkpoints").mkdir()
    with pytest.raises(ConfigError, match="different config .*rest.decoder"):
        check_run_dir(changed)
