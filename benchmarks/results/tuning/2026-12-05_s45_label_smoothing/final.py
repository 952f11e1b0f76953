import csv, sys
# final-epoch held-out top-1 and agreement of each run dir given
for d in sys.argv[1:]:
    rows = [r for r in csv.DictReader(open(f"{d}/metrics.csv")) if r.get('val/top1')]
    r = rows[-1]
    print(f"{d:40} epoch {r['epoch']:>3} top1 {100*float(r['val/top1']):.2f} agreement {100*float(r['val/agreement']):.2f} teacher {100*float(r['val/teacher_top1']):.2f}")
