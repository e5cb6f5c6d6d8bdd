"""What the tests share besides genact.testing: the fixture files and the captions
the `fitted` model learns."""

import socket
import subprocess
import sys
from pathlib import Path

FIXTURES = Path(__file__).parent / "fixtures"
CAPTIONS = ["swimming", "playing guitar"]


def free_port() -> int:
    """A TCP port nothing listens on now: each torchrun test takes its own, so test
    files running side by side (pytest -n) never meet on one."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def write_ucf101(root: Path, classes: list[str], videos: int, train: int) -> None:
    """A UCF-101 layout below root: `videos` coloured clips per class (class c in colour
    channel c) in videos/<Class>/, the first `train` of each in trainlist01.txt, the rest
    in testlist01.txt, with classInd.txt, in splits/."""
    import numpy as np

    from genact.data import write_video
    from genact.testing import coloured_frames

    rng = np.random.default_rng(0)
    (root / "splits").mkdir(parents=True)
    (root / "splits" / "classInd.txt").write_text(
        "".join(f"{i + 1} {c}\n" for i, c in enumerate(classes))
    )
    lists: tuple[list, list] = ([], [])
    for c, name in enumerate(classes):
        for g in range(videos):
            rel = f"{name}/v_{name}_g{g:02d}_c01.mp4"
            write_video(root / "videos" / rel, coloured_frames(rng, (8, 32, 32), c, 180))
            lists[g >= train].append(rel)
    (root / "splits" / "trainlist01.txt").write_text("".join(f"{r} 1\n" for r in lists[0]))
    (root / "splits" / "testlist01.txt").write_text("".join(f"{r}\n" for r in lists[1]))


def genact(*args, cwd=None, env=None) -> subprocess.CompletedProcess:
    """`genact ARGS...` as a user runs it, its output captured."""
    return subprocess.run(
        [sys.executable, "-m", "genact", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=cwd,
        env=env,
    )


def one_error_line(out: subprocess.CompletedProcess) -> str:
    """The one `genact: error: ...` line of a command that exited 2 (asserted)."""
    lines = out.stderr.strip().splitlines()
    assert out.returncode == 2 and len(lines) == 1 and lines[0].startswith("genact: error: "), (
        out.stderr[-2000:]
    )
    return lines[0]


def tiny_rest_settings(root: Path, blip_dir: Path, clip_dir: Path) -> list[str]:
    """Four coloured videos in root/videos and the settings of a tiny 2-epoch REST run
    on them (one round per epoch, H = 2); callers add run.dir and their own overrides."""
    import numpy as np

    from genact.data import write_video
    from genact.testing import coloured_frames

    rng = np.random.default_rng(0)
    for i in range(4):
        write_video(root / "videos" / f"v{i}.mp4", coloured_frames(rng, (8, 32, 40), i % 3, 150))
    return [
        f"data.root={root / 'videos'}",
        f"model.blip={blip_dir}",
        f"model.clip={clip_dir}",
        "data.frames=2",
        "data.num_workers=0",
        "optim.epochs=2",
        "optim.global_batch=2",
        "optim.batch_size=2",
        "rest.epochs_per_round=1",
        "rest.neighbours=2",
        "rest.max_new_tokens=4",
        "run.progress=false",
    ]
