import time, torch, timm
from distill.runtime import bf16_fast
torch.set_num_threads(2)
m = timm.create_model("resnet18", num_classes=10).to(memory_format=torch.channels_last)
opt = torch.optim.SGD(m.parameters(), lr=0.01, momentum=0.9)
x = torch.randn(128, 3, 64, 64).contiguous(memory_format=torch.channels_last); y = torch.randint(0, 10, (128,))
def step(bf16):
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        loss = torch.nn.functional.cross_entropy(m(x), y)
    opt.zero_grad(); loss.backward(); opt.step()
print("bf16_fast:", bf16_fast("cpu"))
for bf16, n in ((False, 4), (True, 2), (False, 4)):
    step(bf16); t = time.perf_counter()
    for _ in range(n): step(bf16)
    print("bf16" if bf16 else "fp32", f"{(time.perf_counter()-t)/n*1000:.0f} ms a step")
