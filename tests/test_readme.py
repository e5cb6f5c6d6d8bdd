"""The README's examples run: every code block marked `<!-- run by tests/test_readme.py -->`
is executed against the shipped miniature-world models, with the model ids and data
paths it names swapped for the ones this test makes, and must finish what it starts."""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from genact.data import write_video
from genact.world.demo_runs import SHIPPED
from genact.world.render import ClipSpec, render_clip
from helpers import write_ucf101

pytestmark = pytest.mark.slow  # each block loads the models and captions videos

README = Path(__file__).parents[1] / "README.md"
MARK = "<!-- run by tests/test_readme.py -->"


def marked_blocks() -> list[tuple[str, str]]:
    """(language, code) of each marked block, in README order."""
    return re.findall(re.escape(MARK) + r"\n```(\w+)\n(.*?)\n```", README.read_text(), re.S)


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """A clip, a folder of clips, a class file and a UCF-101 layout, all of the world."""
    root = tmp_path_factory.mktemp("readme")
    for k, (verb, obj) in enumerate(
        [("swaying", "ball"), ("pulsing", "ring"), ("bouncing", "box")]
    ):
        frames = render_clip(ClipSpec(verb, obj, "grass", 1000 + k))
        write_video(root / "clips" / f"{verb}_{obj}.mp4", frames)
    (root / "clip.mp4").write_bytes((root / "clips" / "swaying_ball.mp4").read_bytes())
    (root / "ucf101_classes.txt").write_text("swaying ball\npulsing ring\nbouncing box\n")
    write_ucf101(root / "ucf", ["Surfing", "Rowing"], videos=2, train=1)
    return root


def substituted(code: str, root: Path) -> str:
    swaps = {
        "runs/rest_k400/final": str(SHIPPED / "blip"),
        "Salesforce/blip-image-captioning-base": str(SHIPPED / "blip"),
        "openai/clip-vit-base-patch16": str(SHIPPED / "clip"),
        '"ucfTrainTestlist"': repr(str(root / "ucf" / "splits")),
        '"UCF-101"': repr(str(root / "ucf" / "videos")),
    }
    for old, new in swaps.items():
        code = code.replace(old, new)
    return code


def test_the_readme_has_runnable_blocks():
    kinds = [lang for lang, _ in marked_blocks()]
    assert kinds.count("bash") >= 3 and kinds.count("python") == 1


@pytest.mark.parametrize("index", range(len(marked_blocks())))
def test_a_readme_block_runs(index, world):
    lang, code = marked_blocks()[index]
    env = {
        **os.environ,
        "GENACT_CACHE": str(world / "cache"),
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
    }
    cmd = ["bash", "-euo", "pipefail", "-c"] if lang == "bash" else [sys.executable, "-c"]
    out = subprocess.run(
        [*cmd, substituted(code, world)],
        cwd=world,
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    assert out.returncode == 0, f"{code}\n{out.stderr[-3000:]}"
    assert out.stdout.strip(), code  # it printed its result
    if lang == "python":
        assert re.search(r"top-1 \d+\.\d on 2 videos", out.stdout) and "'labels'" in out.stdout
