"""The speed benchmark: dvl against Keras 3 on TensorFlow, same machine.

    python launch.py --config experiments/benchmark.py --workdir runs/bench
    python launch.py --config experiments/benchmark.py:models=resnet50+vgg16,batch=32 --workdir runs/bench2

Train step at batch 16 and 224x224 (float32 on a CPU), inference latency at
batch 1, compile times and the fraction of the matrix-multiply peak, for
ResNet-50, EfficientNet-B0, MobileNetV1 and MobileNetV2 (see
``dvl.jobs.benchmark``). Arguments: ``models`` ('+'-separated registry names),
``batch`` ('+'-separated), ``resolution`` (0: each model's own), ``dtype``,
``peer`` ('keras' or 'none'), ``rounds``, ``steps``, ``remat``, ``gpu``
(batch 256, bfloat16, no peer: the accelerator figures), ``runlocal``
(MobileNetV1 at 64x64, seconds).
"""

from dvl.config_args import parse_arg

DEFAULT_MODELS = 'resnet50+efficientnet_b0+mobilenet_v1+mobilenet_v2'


def get_config(arg=None):
  arg = parse_arg(arg, models=DEFAULT_MODELS, batch='16', resolution=224,
                  dtype='float32', peer='keras', rounds=5, steps=3,
                  remat=False, gpu=False, runlocal=False)
  config = parse_arg(None, job='benchmark')
  config.models = tuple(arg.models.split('+'))
  config.batch_sizes = tuple(int(b) for b in arg.batch.split('+'))
  config.resolution = arg.resolution
  config.dtype = arg.dtype
  config.peer = arg.peer
  config.rounds = arg.rounds       # alternations of dvl and the peer
  config.steps = arg.steps         # timed train steps per round
  config.warmup = 1                # untimed calls after compiling
  config.infer_batch = 1           # 0 skips the latency measurement
  config.infer_calls = 5           # timed inference calls per round
  config.warm_compile = True       # also time a compile from the cache
  config.remat = arg.remat         # recompute each block in the backward
  if arg.gpu:
    config.batch_sizes = (256,)
    config.dtype = 'bfloat16'
    config.peer = 'none'
    config.steps = 20
  if arg.runlocal:
    config.models = ('mobilenet_v1',)
    config.batch_sizes = (2,)
    config.resolution = 64
    config.rounds = 2
    config.steps = 2
    config.infer_calls = 2
  return config
