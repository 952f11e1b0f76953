"""Two runs side by side from one start: epochs the second had done when the first finished (interpolated
between its epoch lines), so ratio = first's epochs / second's = how much faster the first trained."""
import re, sys, datetime as dt
def stamps(path):
    out, t0 = [], None
    for line in open(path, errors="replace"):
        m = re.match(r"\[(\S+ \S+)\]\[(\S+)\]\[INFO\] - (.*)", line)
        if not m: continue
        t = dt.datetime.strptime(m.group(1), "%Y-%m-%d %H:%M:%S,%f")
        if m.group(3).startswith("soft-target cache val"): t0 = t
        elif m.group(2) == "distill.callbacks" and m.group(3).startswith("epoch "): out.append(t)
    return t0, out
(a0, a), (b0, b) = (stamps(p) for p in sys.argv[1:3])
end = a[-1]
done = sum(t <= end for t in b)
prev = b[done - 1] if done else b0
frac = (end - prev) / (b[done] - prev) if done < len(b) else 0.0
print(f"{sys.argv[1].split('/')[-2]}: {len(a)} epochs in {(end - a0).total_seconds() / 60:.1f} min; the other "
      f"{done + frac:.2f} by then (start gap {(b0 - a0).total_seconds():+.0f} s): ratio {len(a) / (done + frac):.3f}")
