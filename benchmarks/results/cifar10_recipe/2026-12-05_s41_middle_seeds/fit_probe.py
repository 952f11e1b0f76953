"""Teacher and students on train vs test (centre views): top-1 and agreement. Session 41 diagnostic."""
import sys, torch
sys.path.insert(0, "/work/main")
from teachers.factory import create_teacher
from students import load_student
from students.evaluate import eval_loader, student_file
from distill.data import labeled_files
from distill.normalize import Normalize
from distill.views import CropViews
from distill.data import ImageFiles
from torch.utils.data import DataLoader
from timm.data import resolve_model_data_config
torch.set_num_threads(1)
T = "/tmp/s37/cache/recipes/cifar10/cifar10_teacher-resnet18-labels1.0/teacher.safetensors"
teacher = create_teacher("resnet18", T).to(memory_format=torch.channels_last)
studs = {r: load_student(student_file(f"/tmp/s38/runs/{r}")).to(memory_format=torch.channels_last).eval() for r in sys.argv[1:]}
tsize = resolve_model_data_config(teacher)["input_size"][-1]
for split in ("train", "test"):
    files, labels, _ = labeled_files(f"/work/shared/data/cifar10/{split}", None, "folder", 10)
    views = CropViews({"student": 32, "teacher": tsize}, train=False, crop_pct=1.0)
    loader = DataLoader(ImageFiles(files, labels, views), batch_size=500)
    nt, ns = Normalize(teacher, torch.channels_last), {r: Normalize(m, torch.channels_last) for r, m in studs.items()}
    right = {"teacher": 0, **{r: 0 for r in studs}}; agree = {r: 0 for r in studs}; n = 0
    with torch.inference_mode():
        for b in loader:
            tp = teacher(nt(b["teacher"])).argmax(1); y = b["label"]; n += len(y)
            right["teacher"] += int((tp == y).sum())
            for r, m in studs.items():
                sp = m(ns[r](b["student"])).argmax(1)
                right[r] += int((sp == y).sum()); agree[r] += int((sp == tp).sum())
    print(split, n, {k: round(100 * v / n, 2) for k, v in right.items()}, "agreement", {k: round(100 * v / n, 2) for k, v in agree.items()}, flush=True)
