"""Session 36: timm students at 32 px, padding first on their depthwise convs whose map is smaller than the
kernel (a forward pre-hook, measurement only: not what the product does), against as built. One thread.
    PYTHONPATH=. python benchmarks/results/speed/2026-12-04_s36_pad_first/timm_students.py   (from the project root)"""
import time, torch, timm, torch.nn.functional as F
from torch import nn
torch.set_num_threads(1)
from distill.runtime import fast_cpu_defaults; fast_cpu_defaults()
def patch(m, size):
    sides = {}
    hs = [c.register_forward_hook(lambda mod, i, o: sides.__setitem__(mod, i[0].shape[-1])) for c in m.modules() if isinstance(c, nn.Conv2d)]
    m(torch.randn(2, 3, size, size)); [h.remove() for h in hs]
    for c, side in sides.items():
        if c.groups > 1 and side < c.kernel_size[0] and c.padding != (0, 0):
            p = c.padding; c.padding = (0, 0)
            c.register_forward_pre_hook(lambda mod, a, p=p: (F.pad(a[0], (p[1], p[1], p[0], p[0])),))
    return m
def step_ms(m, n=20):
    m = m.to(memory_format=torch.channels_last).train()
    x = torch.randn(64, 3, 32, 32).contiguous(memory_format=torch.channels_last); y = torch.randint(0, 10, (64,))
    opt = torch.optim.AdamW(m.parameters(), fused=True)
    ts = []
    for i in range(n + 3):
        t = time.perf_counter(); loss = F.cross_entropy(m(x), y); opt.zero_grad(); loss.backward(); opt.step()
        if i >= 3: ts.append(time.perf_counter() - t)
    return 1000 * sorted(ts)[len(ts) // 2]
for name in ("mobilenetv2_050", "mobilenetv3_small_100"):
    torch.manual_seed(0); a = timm.create_model(name, num_classes=10)
    b = patch(timm.create_model(name, num_classes=10), 32); b.load_state_dict(a.state_dict())
    x = torch.randn(4, 3, 32, 32)
    diff = (a.eval()(x) - b.eval()(x)).abs().max().item()
    r = [(step_ms(a), step_ms(b)) for _ in range(3)]
    print(name, "maxdiff", f"{diff:.1e}", "padded conv / pad first ms:", [(round(p, 1), round(q, 1)) for p, q in r])
