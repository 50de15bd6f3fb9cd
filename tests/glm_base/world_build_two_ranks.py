"""Run by torchrun in tests: every rank asks for the default world inside ``main_process_first``;
each real build appends the building rank to ``$BUILD_LOG``."""

import os
import sys
from pathlib import Path

import world.default as default

from glm_base.trainkit.args import TrainArgs
from glm_base.trainkit.run import start_run

real_build = default.build


def counting_build(cfg):
    with open(os.environ["BUILD_LOG"], "a", encoding="utf-8") as handle:
        handle.write(f"{os.environ.get('RANK', '0')}\n")
    return real_build(cfg)


default.build = counting_build
run = start_run(TrainArgs(output_dir=sys.argv[1]), "world-test")
with run.main_process_first():
    train, _ = default.world_files("corpus", size="tiny", seed=0)
assert Path(train).is_file()
run.accelerator.end_training()
