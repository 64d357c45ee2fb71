"""The kit's fixtures (tiny victim, tiny oracle, harness_env) for every test.

Torch runs single-threaded in the test process: the tests' networks are tiny, and on a
2-core machine intra-op threads only contend (a tiny forward pass took 7 ms with one
thread and 60 ms with two under load). Worker processes set their own threads.
"""

import torch

pytest_plugins = ["harness.testing.plugin"]

torch.set_num_threads(1)
