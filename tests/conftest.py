"""The tests run with the XLA flags that ``launch.py`` sets for every job."""

from dvl import lowering

lowering.add_cpu_xla_flags()
