"""The run configs: one dataclass per section (`configs/*.yaml` set them and
`key=value` overrides them: `optim.lr=1e-5`, `rest.neighbours=1`), and one per run
kind, which declares what its lifecycle needs to know: its name, the settings a
resume may change, and those only its training reads."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar, Literal

from genact.errors import ConfigError
from genact.settings import (  # noqa: F401  (the loading API, re-exported for `from genact.config import ...`)
    Section,
    bounded,
    bounded_list,
    check_template,
    expand_path,
    freeze,
    load_config,
    option,
    path_field,
    replace,
    save_config,
    to_dict,
)

DEFAULT_PROMPTS = ("a video of", "a person is", "someone is")  # REST's initial captioning prompts

# settings any run may change on resume: where and how it runs, not what it computes
# (per-pass batch sizes change memory, not results: see docs/rest.md, "Guarantees")
RESUMABLE = (
    "run.dir",
    "run.resume",
    "run.stop_at_step",
    "run.progress",
    "run.device",
    "run.log_every",
    "run.checkpoint_every",
    "run.keep_checkpoints",
    "run.tensorboard",
    "run.dist_timeout_min",
    "run.threads",
    "data.num_workers",
    "data.frame_cache",
    "optim.compile",
)


class RunSettings(Section):
    """What a run's lifecycle (genact.training.run) needs to know of its config class."""

    kind: ClassVar[str]  # the run's name: recorded as `trained_by` in the model it makes
    resumable: ClassVar[tuple[str, ...]] = RESUMABLE  # settings a resume may change
    # prefixes of the settings only training reads: until the first checkpoint a resume may correct
    # them
    training_only: ClassVar[tuple[str, ...]] = ("optim.", "run.seed")
    # left unset (None), these take the starting model's value; config.yaml records the value used
    model_settings: ClassVar[tuple[str, ...]] = ("data.frames", "model.prompt", "model.image_size")


@dataclass
class DataConfig(Section):
    """Which videos to train on. `format`: folder (every video below `root`,
    unlabelled), list (`list` file of `path label` lines, optional `classes` file),
    kinetics (`list` = the Kinetics CSV, `subset` its split column), hmdb51 / ucf101
    (`list` = the official split folder, `split`, `subset`)."""

    format: Literal["folder", "list", "kinetics", "hmdb51", "ucf101"] = "folder"
    root: str = path_field("")
    list: str | None = path_field(None)
    classes: str | None = path_field(None)
    subset: str | None = "train"
    split: int = bounded(1, 1, 3)
    # T; None = the model's (a saved genact model's, else 8)
    frames: int | None = bounded(None, 1, 256)
    num_workers: int = bounded(4, 0)
    limit: int | None = bounded(None, 1)  # first N videos only (quick trials)
    # a `genact cache-frames` directory: frames read from it instead of decoded
    frame_cache: str | None = path_field(None)


@dataclass
class ModelConfig(Section):
    # image BLIP or a genact model: hub id or dir
    blip: str = path_field("Salesforce/blip-image-captioning-base")
    clip: str = path_field("openai/clip-vit-base-patch16")
    use_adapters: bool = True
    adapter_layers: list[int] | None = None  # None = after every ViT layer
    prompt: str | None = None  # None = the model's (a saved genact model's, else "a video of")
    # frame side the ViT sees; None = the model's (a saved genact model's, else BLIP's own: 384 for
    # BLIP-base)
    image_size: int | None = bounded(None, 1, 1024)


@dataclass
class OptimConfig(Section):
    """REST Table 10: AdamW (0.9, 0.98), wd 0.001, cosine 2e-5 -> 2e-8, batch 64, LS 0.2."""

    epochs: int = bounded(60, 1)
    lr: float = bounded(2e-5, 0)
    min_lr: float = bounded(2e-8, 0)
    warmup_steps: int = bounded(0, 0)
    betas: list[float] = bounded_list([0.9, 0.98], 0, 1, length=2, open_high=True)
    weight_decay: float = bounded(0.001, 0)
    label_smoothing: float = bounded(0.2, 0, 1, open_high=True)
    global_batch: int = bounded(64, 1)  # videos per optimizer step, over all processes
    # videos per process per forward pass (gradient accumulation fills the rest)
    batch_size: int = bounded(8, 1)
    grad_clip: float | None = bounded(None, 0, open_low=True)
    precision: Literal["auto", "bf16", "fp32"] = "auto"  # auto: bf16 on GPU, fp32 on CPU
    # torch.compile the video encoder, ViT + adapters (GPU; a minute of compiling at start)
    compile: bool = False
    # train the text decoder only: the ViT and the temporal adapters keep their weights
    freeze_video_encoder: bool = False
    # the temporal adapters' learning rate as a multiple of lr (1: one rate for all, as REST)
    adapter_lr_scale: float = bounded(1.0, 0, open_low=True)


@dataclass
class RunConfig(Section):
    dir: str = path_field("runs/rest")
    seed: int = bounded(0, 0)
    device: str = "auto"  # auto | cpu | cuda (under torchrun: the local GPU)
    resume: Literal["no", "auto"] = "no"  # auto: continue the run in `dir` if it has started
    log_every: int = bounded(10, 1)  # optimizer steps between metric lines
    # optimizer steps between checkpoints (and at every epoch end)
    checkpoint_every: int = bounded(500, 1)
    keep_checkpoints: int = bounded(2, 1)
    # leave cleanly after this optimizer step (time-limited jobs)
    stop_at_step: int | None = bounded(None, 1)
    tensorboard: bool = True
    progress: bool = True
    # collective timeout: how long processes wait for each other at a barrier
    dist_timeout_min: int = bounded(120, 1)
    # torch CPU threads per process; None = $OMP_NUM_THREADS if set, else cores / (processes x (1 +
    # data.num_workers))
    threads: int | None = bounded(None, 1)


@dataclass
class RestStepsConfig(Section):
    """Algorithm 1's knobs and the ablation switches of REST §4."""

    prompts: list[str] = field(default_factory=lambda: list(DEFAULT_PROMPTS))
    neighbours: int = bounded(2000, 1)  # H; 1 = self-training only
    # exact, or faiss-ivf (approximate and faster at large N; pip install faiss-cpu)
    neighbour_index: Literal["exact", "faiss-ivf"] = "exact"
    # faiss-ivf: inverted lists searched per video (more: higher recall, slower)
    faiss_nprobe: int = bounded(64, 1)
    keep: int = bounded(3, 1)  # K captions per video
    epochs_per_round: int = bounded(10, 1)  # R
    # N_I: rounds that retrieve from neighbours; later ones use H = 1
    retrieval_rounds: int | None = bounded(None, 0)
    num_beams: int = bounded(3, 1, 64)
    max_new_tokens: int = bounded(30, 1, 512)  # at most BLIP's text positions
    # genact's beam search, or transformers' generate (the reference; the same captions)
    decoder: Literal["genact", "transformers"] = "genact"
    caption_batch: int = bounded(16, 1)  # videos per captioning batch
    clip_batch: int = bounded(32, 1)
    feature_dtype: Literal["float16", "float32"] = "float16"  # of the stored CLIP features
    chunk: int = bounded(1024, 1)  # videos captioned between progress records (resume granularity)

    def __post_init__(self) -> None:
        if not self.prompts:
            raise ConfigError("rest.prompts: give at least one prompt")


@dataclass
class RestConfig(RunSettings):
    kind: ClassVar[str] = "rest"
    resumable: ClassVar[tuple[str, ...]] = (
        *RESUMABLE,
        "optim.batch_size",
        "rest.caption_batch",
        "rest.clip_batch",
    )
    training_only: ClassVar[tuple[str, ...]] = ("optim.", "run.seed", "rest.epochs_per_round")

    run: RunConfig = field(default_factory=RunConfig)
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    rest: RestStepsConfig = field(default_factory=RestStepsConfig)


@dataclass
class LabelsConfig(Section):
    """How a labelled video's class name becomes its training caption."""

    # the caption's form, "{}" = the bare class name ("a {}" gives "a pulsing ball")
    template: str = "{}"

    def __post_init__(self) -> None:
        check_template(self.template, "labels.template")


@dataclass
class SupervisedConfig(RunSettings):
    """ "GAR + class labels": the same model and optimiser, captions = class names."""

    kind: ClassVar[str] = "supervised"
    resumable: ClassVar[tuple[str, ...]] = (*RESUMABLE, "optim.batch_size")

    run: RunConfig = field(default_factory=lambda: RunConfig(dir="runs/supervised"))
    data: DataConfig = field(default_factory=lambda: DataConfig(format="kinetics"))
    model: ModelConfig = field(default_factory=ModelConfig)
    optim: OptimConfig = field(default_factory=lambda: OptimConfig(epochs=10))
    labels: LabelsConfig = field(default_factory=LabelsConfig)


@dataclass
class RegenStepsConfig(Section):
    """ReGen's RL settings (SPEC §6); any reward weight may be 0 (the ablations)."""

    samples: int = bounded(5, 1)  # captions sampled per video and step
    temperature: float = bounded(1.0, 0, open_low=True)
    top_k: int = bounded(0, 0)  # 0 = off
    top_p: float = bounded(1.0, 0, 1, open_low=True)
    max_new_tokens: int = bounded(30, 1, 512)
    # others (mean reward of the other samples) | greedy (the greedy caption's reward)
    baseline: Literal["others", "greedy"] = "others"
    w_cls: float = 1.0
    w_clip: float = 1.0
    w_grammar: float = 1.0
    cls_form: Literal["ce", "cos", "l2"] = "ce"
    # CLS-R softmax temperature; None = CLIP's (1 / logit_scale)
    tau: float | None = bounded(None, 0, open_low=True)
    grammar: Literal["mlm", "causal"] = (
        "mlm"  # mlm: BERT pseudo-log-likelihood; causal: GPT-2 mean log-likelihood
    )
    grammar_model: str = path_field("bert-base-uncased")
    # each reward to zero mean, unit std over the micro-batch before weighting, so the weights mean
    # what they
    # say: raw CLS-R spreads ~18x wider than CLIP-R (docs/regen.md, "Reward scales")
    standardise: bool = True
    lm_weight: float = bounded(0.0, 0)  # weight of an LM loss on REST pseudo-captions
    # the REST bank file they come from (a round's, in the run's bank/)
    lm_captions: str | None = path_field(None)
    templates: list[str] = field(default_factory=lambda: ["{}"])  # class-name templates for CLS-R
    clip_batch: int = bounded(32, 1)
    feature_dtype: Literal["float16", "float32"] = "float16"

    def __post_init__(self) -> None:
        for i, t in enumerate(self.templates):
            check_template(t, f"regen.templates[{i}]")
        if self.lm_weight > 0 and self.lm_captions is None:
            raise ConfigError(
                "regen.lm_weight > 0 needs regen.lm_captions (a REST run's bank file of a round)"
            )
        if self.baseline == "others" and self.samples < 2:
            raise ConfigError("regen.baseline=others needs regen.samples >= 2")


@dataclass
class RegenConfig(RunSettings):
    # optim.batch_size is not resumable: captions are sampled per micro-batch (other micro-batches,
    # other draws)
    kind: ClassVar[str] = "regen"
    resumable: ClassVar[tuple[str, ...]] = (*RESUMABLE, "regen.clip_batch")

    run: RunConfig = field(default_factory=lambda: RunConfig(dir="runs/regen"))
    data: DataConfig = field(default_factory=lambda: DataConfig(format="kinetics"))
    model: ModelConfig = field(default_factory=lambda: ModelConfig(blip="runs/rest_k400/final"))
    optim: OptimConfig = field(
        default_factory=lambda: OptimConfig(
            epochs=10, lr=2.5e-6, min_lr=2.5e-8, weight_decay=0.01, label_smoothing=0.0
        )
    )
    regen: RegenStepsConfig = field(default_factory=RegenStepsConfig)


@dataclass(frozen=True)
class Decoding:
    """How a command captions videos, built once from its options (genact.commands.
    decoding) or set by the caller: frames per clip, frame side and prompt (None: the
    model's own), beam search, and the loader's batch size and decoding workers."""

    frames: int | None = None
    image_size: int | None = None
    prompt: str | None = None
    beams: int = 3
    max_new_tokens: int = 30
    batch_size: int = 8
    workers: int = 0
    # genact's beam search, or transformers' generate (the reference; the same captions)
    decoder: Literal["genact", "transformers"] = "genact"
