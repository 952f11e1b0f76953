# students.export --int8 with onnxruntime's reduce_range=True (7-bit weights), everything else the same
import functools, sys
import onnxruntime.quantization as q
q.quantize_static = functools.partial(q.quantize_static, reduce_range=True)
from students.export import main
sys.exit(main())
