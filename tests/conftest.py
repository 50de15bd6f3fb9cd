"""Suite-wide fixtures."""

import pytest


@pytest.fixture(autouse=True)
def restore_environment():
    """Code under test may set process-wide variables (the colocated vLLM engine sets RANK, WORLD_SIZE,
    MASTER_ADDR, MASTER_PORT as a launcher would); they must not make later tests look distributed."""
    import os

    saved = dict(os.environ)
    yield
    for key in set(os.environ) - set(saved):
        del os.environ[key]
    os.environ.update(saved)


@pytest.fixture(autouse=True)
def fresh_accelerate_state():
    """accelerate keeps one process-wide AcceleratorState; a test that builds an Accelerator with other
    settings (TRL's trainers pick their own precision) must not leak them into the next test."""
    yield
    import sys

    if "accelerate" in sys.modules:
        from accelerate.state import AcceleratorState

        AcceleratorState._reset_state(reset_partial_state=True)


def launch_two_processes_now(module: str, args: list[str], cwd) -> None:
    """``python -m module args`` as two data-parallel CPU processes (torchrun, gloo). On CPU,
    ``accelerate launch --num_processes 2`` would start a single process (see glm_base.trainkit.accel)."""
    import os
    import subprocess
    import sys

    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    try:
        done = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                               "-m", module, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
    except subprocess.TimeoutExpired as err:  # a hang is a failure, never a stuck suite
        raise AssertionError(f"two-process {module} did not finish in 600 s:\n{(err.stderr or b'')[-3000:]!r}") from None
    if done.returncode:
        raise AssertionError(f"two-process {module} failed:\n{done.stderr[-3000:]}")


@pytest.fixture(scope="session")
def launch_two_processes():
    """``launch(module, args, cwd)``: see :func:`launch_two_processes_now`."""
    return launch_two_processes_now
