import csv, sys
# prints val/top1 every 8 epochs for each metrics.csv given
for path in sys.argv[1:]:
    rows = [r for r in csv.DictReader(open(path)) if r.get('val/top1')]
    pts = {int(r['epoch']): float(r['val/top1']) for r in rows}
    ks = sorted(pts)
    print(path.split('/')[-2], ' '.join(f"{k}:{100*pts[k]:.1f}" for k in ks if k % 8 == 7 or k == ks[-1]),
          'teacher', rows[-1].get('val/teacher_top1'))
