"""Teacher checkpoints in every format, their class lists and data configs, and each broken case."""
from __future__ import annotations

import json

import pytest
import timm
import torch
from timm.data import resolve_model_data_config

from teachers import create_teacher, for_classes, save_teacher


@pytest.fixture(scope="module")
def source():
    torch.manual_seed(0)
    return timm.create_model("test_resnet", num_classes=3).eval()


def _same_outputs(a, b) -> bool:
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    return torch.equal(a(x), b(x))


@pytest.mark.parametrize("fmt", ["pth", "pth_model_key", "ddp", "lightning_ckpt"])
def test_checkpoint_formats_round_trip(tmp_path, source, fmt):
    state = source.state_dict()
    payload = {
        "pth": state,
        "pth_model_key": {"model": state, "epoch": 3},
        "ddp": {f"module.{k}": v for k, v in state.items()},
        "lightning_ckpt": {"state_dict": {f"model.{k}": v for k, v in state.items()}, "epoch": 1},
    }[fmt]
    path = tmp_path / ("teacher.ckpt" if fmt == "lightning_ckpt" else "teacher.pth")
    torch.save(payload, path)
    teacher = create_teacher("test_resnet", checkpoint_path=str(path))
    assert teacher.num_classes == 3  # read from the checkpoint's classifier
    assert _same_outputs(source, teacher)
    assert not teacher.training and not any(p.requires_grad for p in teacher.parameters())


def test_safetensors_with_sidecar(tmp_path, source):
    model = for_classes(timm.create_model("test_resnet", num_classes=3,
                                          pretrained_cfg_overlay=dict(input_size=(3, 24, 24), mean=(0.5,) * 3,
                                                                      std=(0.25,) * 3)), ["x", "y", "z"])
    model.load_state_dict(source.state_dict())
    path = save_teacher(model, tmp_path / "t", "test_resnet")
    assert json.loads(path.with_suffix(".json").read_text())["img_size"] == 24
    teacher = create_teacher("test_resnet", checkpoint_path=str(path))
    assert _same_outputs(source, teacher)
    cfg = resolve_model_data_config(teacher)
    assert cfg["input_size"] == (3, 24, 24) and cfg["mean"] == (0.5,) * 3 and cfg["std"] == (0.25,) * 3
    assert teacher.pretrained_cfg["label_names"] == ("x", "y", "z")
    assert resolve_model_data_config(create_teacher("test_resnet", checkpoint_path=str(path),
                                                    img_size=40))["input_size"] == (3, 40, 40)


def test_a_student_file_teaches_as_it_was_built(tmp_path):
    import students  # registers mobilenet_v1 with timm
    torch.manual_seed(0)
    student = students.create_student(4, alpha=0.5, img_size=32, label_names=list("abcd")).eval()
    assert student.model_args["stem_stride"] == 1  # 32 px: not the default 2
    path = students.save_student(student, tmp_path / "student")
    teacher = create_teacher("mobilenet_v1", checkpoint_path=str(path))
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    assert torch.equal(student(x), teacher(x))
    assert resolve_model_data_config(teacher)["input_size"] == (3, 32, 32)
    assert teacher.pretrained_cfg["label_names"] == ("a", "b", "c", "d")
    with pytest.raises(ValueError, match="set teacher.name=mobilenet_v1$"):  # its weights fit, its stride not
        create_teacher("mobilenet_v1_050", checkpoint_path=str(path))


def test_classes_txt_is_read(tmp_path, source):
    torch.save(source.state_dict(), tmp_path / "t.pth")
    (tmp_path / "classes.txt").write_text("cat\ndog\nemu\n")
    assert create_teacher("test_resnet", checkpoint_path=str(tmp_path / "t.pth")).pretrained_cfg["label_names"] == (
        "cat", "dog", "emu")
    (tmp_path / "classes.txt").write_text("cat\ndog\n")
    with pytest.raises(ValueError, match="2 names but it has 3 outputs"):
        create_teacher("test_resnet", checkpoint_path=str(tmp_path / "t.pth"))


@pytest.mark.parametrize("case, match", [
    ("missing", "does not exist"),
    ("corrupt", "could not be read"),
    ("num_classes", r"teacher\.num_classes=5 but .* has 3 classes"),
    ("wrong_arch", "does not fit"),
    ("unknown_name", "is not a timm model"),
])
def test_broken_teachers_are_clear_errors(tmp_path, source, case, match):
    path = tmp_path / "t.pth"
    torch.save(source.state_dict(), path)
    kwargs = dict(name="test_resnet", checkpoint_path=str(path))
    if case == "missing":
        kwargs["checkpoint_path"] = str(tmp_path / "nope.pth")
    elif case == "corrupt":
        path.write_bytes(b"garbage" * 10)
    elif case == "num_classes":
        kwargs["num_classes"] = 5
    elif case == "wrong_arch":
        kwargs["name"] = "test_efficientnet"
    elif case == "unknown_name":
        kwargs["name"] = "resnet_9000"
    with pytest.raises((ValueError, FileNotFoundError), match=match):
        create_teacher(**kwargs)


def test_for_classes_resets_only_a_mismatched_head(source):
    model = timm.create_model("test_resnet", num_classes=3)
    head = model.get_classifier().weight
    assert for_classes(model, ["a", "b", "c"]).get_classifier().weight is head
    assert for_classes(model, ["a", "b"]).num_classes == 2


def test_ensemble_averages_probabilities_at_temperature():
    from teachers import TeacherEnsemble

    torch.manual_seed(0)
    a = timm.create_model("test_resnet", num_classes=3, pretrained_cfg_overlay=dict(input_size=(3, 32, 32)))
    b = timm.create_model("test_resnet", num_classes=3, pretrained_cfg_overlay=dict(
        input_size=(3, 16, 16), mean=(0.5,) * 3, std=(0.5,) * 3))
    ens = TeacherEnsemble([a.eval(), b.eval()], temperature=4.0)
    x = torch.rand(2, 3, 32, 32)
    xa = (x - torch.tensor(resolve_model_data_config(a)["mean"]).view(1, 3, 1, 1)) / torch.tensor(
        resolve_model_data_config(a)["std"]).view(1, 3, 1, 1)
    xb = (torch.nn.functional.interpolate(x, size=(16, 16), mode="bilinear", antialias=True) - 0.5) / 0.5
    expected = (torch.softmax(a(xa) / 4, -1) + torch.softmax(b(xb) / 4, -1)) / 2
    assert torch.allclose(torch.softmax(ens(x) / 4, -1), expected, atol=1e-5)
    assert resolve_model_data_config(ens)["input_size"] == (3, 32, 32)
    with pytest.raises(ValueError, match="disagree"):
        TeacherEnsemble([a, timm.create_model("test_resnet", num_classes=4)], temperature=4.0)


def test_demo_teacher_is_trained_by_the_teacher_task(tmp_path, monkeypatch):
    """The demo's teacher goes through `train_teacher.py experiment=demo_teacher` like a recipe's,
    and only when the run reads its missing file."""
    from teachers import demo
    from tests.conftest import compose_cfg

    calls = []
    monkeypatch.setattr(demo, "make_shapes", lambda root: root)
    monkeypatch.setattr(demo, "ensure_teacher", lambda path, overrides: calls.append((path, overrides)))
    teacher_file = tmp_path / "teacher" / "teacher.safetensors"
    demo.prepare(str(tmp_path), [str(tmp_path / "shapes" / "train")])
    assert calls == []  # the teacher file is not read by this run
    demo.prepare(str(tmp_path), [str(teacher_file)], teacher_epochs=3)
    ((path, overrides),) = calls
    assert path == str(teacher_file) and "experiment=demo_teacher" in overrides and "trainer.max_epochs=3" in overrides
    cfg = compose_cfg([*overrides, f"paths.demo_dir={tmp_path}"], config_name="train_teacher")
    assert cfg.teacher.img_size == 32 and cfg.teacher.checkpoint_path is None
    assert cfg.data.train_dir == f"{tmp_path}/shapes/train" and cfg.data.val_dir == f"{tmp_path}/shapes/val"


def _thousand_class_teacher(path):
    """A 1000-class timm teacher whose class list holds the test folders' three names at 10, 500, 999."""
    from tests.conftest import CLASSES

    names = [f"class{i}" for i in range(1000)]
    for i, c in zip((10, 500, 999), CLASSES):
        names[i] = c
    torch.manual_seed(0)
    model = timm.create_model("test_resnet", pretrained=False, num_classes=1000,
                              pretrained_cfg_overlay=dict(input_size=(3, 16, 16)))
    return save_teacher(for_classes(model, names), path, "test_resnet")


def test_class_subset_takes_the_teachers_logits_at_its_classes(tmp_path):
    from teachers.subset import class_subset, subset_for_folders

    file = _thousand_class_teacher(tmp_path / "t")
    teacher = create_teacher("test_resnet", checkpoint_path=str(file))
    x = torch.randn(2, 3, 16, 16)
    for classes in (["ant", "bee", "cat"], [10, 500, 999], ["10", "bee", 999]):
        sub = create_teacher("test_resnet", checkpoint_path=str(file), classes=classes)
        assert sub.num_classes == 3 and sub.class_indices == [10, 500, 999]
        assert sub.pretrained_cfg["label_names"] == ("ant", "bee", "cat")
        torch.testing.assert_close(sub(x), teacher(x)[:, [10, 500, 999]])
    assert resolve_model_data_config(sub)["input_size"] == (3, 16, 16)
    with pytest.raises(ValueError, match="'dog' is not one of the teacher's class names"):
        class_subset(teacher, ["ant", "dog"])
    with pytest.raises(ValueError, match="1000 is not an output"):
        class_subset(teacher, [1000])
    assert subset_for_folders(teacher, ["ant", "cat"]).class_indices == [10, 999]
    with pytest.raises(ValueError, match=r"class folders \['dog'\] name none of the teacher's 1000 outputs"):
        subset_for_folders(teacher, ["ant", "dog"])


def test_an_imagenet_teacher_without_a_class_list_answers_to_imagenet_names():
    """A 1000-class timm model (a hub teacher: no class list of its own) is restricted to folders named by
    WordNet id or by any of the class's synonyms, case-blind, `_` for a space; the student's classes
    keep the folders' names."""
    from teachers.subset import class_subset, subset_for_folders

    model = timm.create_model("test_resnet", pretrained=False, num_classes=1000)
    sub = subset_for_folders(model, ["tench", "English_springer", "n03394916", "chain_saw"])
    assert sub.class_indices == [217, 491, 566, 0]  # sorted folders: English_springer, chain_saw, n03394916, tench
    assert sub.pretrained_cfg["label_names"] == ("English_springer", "chain_saw", "n03394916", "tench")
    assert class_subset(model, [0, "golf ball"]).class_indices == [0, 574]
    with pytest.raises(ValueError, match=r"'crane' names several of the teacher's outputs \[134, 517\]"):
        class_subset(model, ["crane"])
    with pytest.raises(ValueError, match=r"class folders \['crane'\] name several"):
        subset_for_folders(model, ["tench", "crane"])
    assert subset_for_folders(timm.create_model("test_resnet", pretrained=False, num_classes=7), ["a", "b"]).num_classes == 7
