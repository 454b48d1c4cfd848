"""DistributedDataParallel: 2 CPU ranks (gloo, launched by torchrun) train exactly like 1 process."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import warnings

import pytest
import torch

SCRIPT = textwrap.dedent(
    """
    import sys

    import numpy as np
    import torch
    from torch import nn

    from starlabels.training import distributed as distributed_training
    from starlabels.training.config import OptimiserConfig, TrainingConfig
    from starlabels.training.checkpoint import cpu_state
    from starlabels.training.data_access import TrainingData
    from starlabels.training.trainer import Trainer

    torch.set_num_threads(1)


    class Net(nn.Module):
        name = "tiny_conv"

        def __init__(self):
            super().__init__()
            self.n_labels, self.n_pixels = 2, 48
            self.conv = nn.Conv1d(1, 4, 5, padding=2)
            self.fc = nn.Linear(4 * 12, 16)
            self.out = nn.Linear(16, 2)

        def forward(self, x):
            h = torch.max_pool1d(torch.relu(self.conv(x)), 4).flatten(1)
            return self.out(torch.relu(self.fc(h))), None

        def config(self):
            return {}


    def main(out):
        launched = distributed_training.launched_by_torchrun()
        ctx = distributed_training.init_distributed(device="cpu") if launched else None
        rng = np.random.default_rng(0)
        n = 141
        labels = rng.normal(size=(n, 2)).astype(np.float32) * [300.0, 0.4] + [5000.0, 3.0]
        basis = rng.normal(size=(2, 48)).astype(np.float32)
        flux = (1 + 0.1 * ((labels - labels.mean(0)) / labels.std(0)) @ basis).astype(np.float32)
        data = TrainingData.from_arrays(flux, labels, ["TEFF", "LOGG"], error=np.full_like(flux, 0.01))
        split = {"train": np.arange(101), "dev": np.arange(101, 141)}
        torch.manual_seed(0)
        net = Net()
        states = []
        tr = Trainer(net, data, split,
                     optimiser=OptimiserConfig(name="sgd", learning_rate=0.05, scheduler="none"),
                     training=TrainingConfig(epochs=3, patience=5, batch_size=16, seed=4, device="cpu"),
                     spectrum_scaling="centered", distributed=ctx,
                     callbacks=[lambda t, row: states.append(cpu_state(t.network))])
        tr.run_stage("main", split["train"])
        if ctx is None or ctx.rank == 0:
            torch.save({"states": states, "history": tr.history,
                        "world": 1 if ctx is None else ctx.world_size}, out)
        if ctx is not None:
            # every rank ends with identical weights
            w = torch.cat([p.detach().flatten() for p in net.parameters()])
            ref = w.clone()
            torch.distributed.broadcast(ref, 0)
            assert torch.equal(w, ref)
        distributed_training.shutdown()
        print('rank done', flush=True)


    main(sys.argv[1])
    """
)


# A rare (~1 in 10 runs on a loaded 2-core machine, never reproduced in isolation) abort of one
# gloo rank: "terminate called without an active exception" (a C++ thread torn down while still
# joinable), which the launcher reports as SIGABRT. It is the transport, not the training being
# tested, so a launch that dies that way is tried again, up to three launches in all (the suite
# runs two one-thread bench scripts beside the tests, so the machine is loaded; the fresh-clone CI
# run of 8a268cf met one abort, its relaunch passed); any other failure fails at once.
_GLOO_ABORT = "terminate called without an active exception"


def _run(cmd, env, *, retry_gloo_abort=False):
    for attempt in range(3 if retry_gloo_abort else 1):
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=240)
        output = proc.stdout[-3000:] + proc.stderr[-3000:]
        if proc.returncode == 0 or _GLOO_ABORT not in proc.stdout + proc.stderr:
            break
        warnings.warn(f"gloo rank aborted (attempt {attempt + 1}); relaunching:\n{output}", stacklevel=2)
    assert proc.returncode == 0, output


@pytest.mark.slow
def test_two_gloo_ranks_match_single_process_training(tmp_path):
    script = tmp_path / "ddp_train.py"
    script.write_text(SCRIPT)
    env = {
        **os.environ,
        "STARLABELS_NO_PROGRESS": "1",
        "OMP_NUM_THREADS": "1",
        "GLOO_SOCKET_IFNAME": os.environ.get("GLOO_SOCKET_IFNAME", "lo"),
    }
    env.pop("WORLD_SIZE", None)
    _run([sys.executable, str(script), str(tmp_path / "single.pt")], env)
    _run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            "--nproc_per_node=2",
            str(script),
            str(tmp_path / "ddp.pt"),
        ],
        env,
        retry_gloo_abort=True,
    )
    single = torch.load(tmp_path / "single.pt", weights_only=False)
    ddp = torch.load(tmp_path / "ddp.pt", weights_only=False)
    assert single["world"] == 1 and ddp["world"] == 2
    assert len(single["states"]) == len(ddp["states"]) == 3
    moved = 0.0
    for epoch, (a, b) in enumerate(zip(single["states"], ddp["states"], strict=True)):
        for k in a:
            torch.testing.assert_close(b[k], a[k], rtol=1e-5, atol=1e-6, msg=f"epoch {epoch + 1} {k}")
    for k in single["states"][0]:
        moved += float((single["states"][-1][k] - single["states"][0][k]).abs().max())
    assert moved > 1e-3  # training really changed the weights
    # losses are summed over ranks, so the histories agree too
    for ra, rb in zip(single["history"], ddp["history"], strict=True):
        assert rb["train_loss"] == pytest.approx(ra["train_loss"], rel=1e-5)
        assert rb["dev_loss"] == pytest.approx(ra["dev_loss"], rel=1e-5)
