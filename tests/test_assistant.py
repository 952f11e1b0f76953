"""The teacher assistant: a narrow student taught by the wider student the same command distils."""
from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from distill.resume import claim, is_finished
from teachers.assistant import assistant_command, find_finished, teacher_assistant
from tests.helpers import run_cli


def _job(sweep: Path, name: str, overrides: list[str]) -> Path:
    run = sweep / name
    (run / ".hydra").mkdir(parents=True)
    OmegaConf.save(OmegaConf.create(overrides), run / ".hydra" / "overrides.yaml")
    return run


def _finish(run: Path) -> None:
    (run / "student.safetensors").touch()
    (run / "summary.json").write_text("{}")


def test_the_assistant_is_the_finished_run_of_its_command_waited_for(tmp_path):
    """Beside the run: a finished job of another seed is not it; the job of the same command (student.alpha=1
    written as a sweep writes it) is, once it ends, and the search waits for it while it runs."""
    mine = ["student.alpha=0.25", "seed=1", "resume=auto", "assistant=1.0"]
    me = _job(tmp_path, "3", mine)
    _finish(_job(tmp_path, "0", ["student.alpha=1.0", "seed=0"]))
    _finish(_job(tmp_path, "1", ["student.alpha=0.5", "seed=1"]))
    running = _job(tmp_path, "2", ["seed=1", "student.alpha=1"])
    lock = claim(running)

    def end_later():
        time.sleep(0.5)
        _finish(running)
        lock.close()

    threading.Thread(target=end_later).start()
    started = time.monotonic()
    command = assistant_command(mine, 1.0)
    assert command == ["seed=1", "student.alpha=1.0"]
    assert find_finished(me, command) == running / "student.safetensors"
    assert time.monotonic() - started >= 0.4
    assert find_finished(me, assistant_command(mine, 0.75)) is None
    with pytest.raises(ValueError, match="own width"):
        teacher_assistant(0.25, me, 0.25)
    with pytest.raises(ValueError, match="a student width such as 1.0"):
        teacher_assistant("wide", me, 0.25)


def test_a_sweep_job_not_started_yet_is_waited_for(tmp_path):
    """A sweep's jobs start together: the assistant's job (numbered before this one) may not have made its
    directory, nor taken its lock, when the narrow one looks. It is waited for; one that never shows up or
    never takes its lock (it failed before) is given up after `starting_s`."""
    me = _job(tmp_path, "1", ["student.alpha=0.25"])

    def start_then_end():
        time.sleep(0.3)
        starting = _job(tmp_path, "0", ["student.alpha=1.0"])
        time.sleep(0.3)
        lock = claim(starting)
        time.sleep(0.3)
        _finish(starting)
        lock.close()

    threading.Thread(target=start_then_end).start()
    started = time.monotonic()
    found = find_finished(me, ["student.alpha=1.0"], earlier_jobs=1, starting_s=30)
    assert found == tmp_path / "0" / "student.safetensors"
    assert time.monotonic() - started >= 0.8
    other = tmp_path / "other"
    failed = _job(other, "0", ["student.alpha=1.0"])
    started = time.monotonic()
    assert find_finished(_job(other, "2", ["student.alpha=0.25"]), ["student.alpha=1.0"], earlier_jobs=2,
                         starting_s=0.3) is None
    assert 0.6 <= time.monotonic() - started < 5 and not is_finished(failed)


def _recipe_args(folders, tmp_path) -> list[str]:
    return ["experiment=cifar10_recipe", f"data.unlabeled_dir={folders['train']}", f"data.val_dir={folders['val']}",
            f"paths.cache_dir={tmp_path / 'cache'}", "teacher.name=test_resnet",
            "teacher_stage.extra=['trainer.max_steps=3']", "student.img_size=16", "data.label_fraction=1.0",
            "data.batch_size=8", "data.num_workers=0", "trainer.max_epochs=1", "soft_targets.views=1",
            "callbacks.run_report.latency=false", "recipe_assistant={0.25: 0.5}"]


def test_a_recipe_sweep_teaches_its_narrowest_width_with_its_wider_student(folders, tmp_path):
    """`train.py -m experiment=cifar10_recipe` with an assistant for α 0.25: the sweep's α 0.5 job distils
    from the stage teacher, and the α 0.25 job from that job's student file, without training another."""
    sweep = tmp_path / "sweep"
    result = run_cli(["-m", *_recipe_args(folders, tmp_path), "student.alpha=0.5,0.25", "hydra.launcher.n_jobs=1",
                      f"hydra.sweep.dir={sweep}"])
    assert result.returncode == 0, result.stderr[-3000:]
    wide, narrow = (json.loads((sweep / job / "summary.json").read_text()) for job in ("0", "1"))
    assert (wide["alpha"], narrow["alpha"]) == (0.5, 0.25)
    assert wide["teacher"].startswith("test_resnet") and narrow["teacher"].startswith("mobilenet_v1")
    assert f"teacher assistant: {sweep / '0' / 'student.safetensors'}" in (sweep / "1" / "train.log").read_text()
    assert not (sweep / "1" / "assistant").exists()


@pytest.mark.slow
def test_a_run_alone_trains_its_assistant_first(folders, tmp_path):
    """α 0.25 of the recipe run alone: its α 0.5 is trained first into its `assistant/` folder, by the same
    command at that width, then teaches it; the label-only twin needs no assistant."""
    run = tmp_path / "run"
    result = run_cli([*_recipe_args(folders, tmp_path), "student.alpha=0.25", f"hydra.run.dir={run}"])
    assert result.returncode == 0, result.stderr[-3000:]
    assistant = json.loads((run / "assistant" / "summary.json").read_text())
    assert assistant["alpha"] == 0.5 and assistant["teacher"].startswith("test_resnet")
    overrides = OmegaConf.load(run / "assistant" / ".hydra" / "overrides.yaml")
    assert "student.alpha=0.5" in overrides and not any(o.startswith("assistant=") for o in overrides)
    assert json.loads((run / "summary.json").read_text())["teacher"].startswith("mobilenet_v1")

    twin = run_cli([*_recipe_args(folders, tmp_path), "student.alpha=0.25", "supervision=labels",
                    f"hydra.run.dir={tmp_path / 'twin'}"])
    assert twin.returncode == 0, twin.stderr[-3000:]
    assert not (tmp_path / "twin" / "assistant").exists()
