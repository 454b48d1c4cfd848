"""CUDA code paths (issue 17): predict, a catalog run, a training step, MC dropout and DDP with nccl.

Marked ``gpu``; every test skips with a reason where no CUDA device is available (this project's
CI machine has none — the tests were written for a GPU but not run on one yet). Each compares the
GPU result with the same computation on the CPU, to float32 tolerance or MC noise.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path

import numpy as np
import pytest
import torch

from starlabels.inference.predict import predict
from starlabels.inference.uncertainty import PhysicalNetwork, mc_dropout
from starlabels.models.apogee_net import ApogeeNet
from starlabels.models.bcnn import BayesianCNN

pytestmark = pytest.mark.gpu

REF = Path(__file__).resolve().parents[1] / "fixtures" / "apogee_reference"
needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device available")
needs_two = pytest.mark.skipif(torch.cuda.device_count() < 2, reason="DDP over nccl needs two CUDA devices")


@needs_cuda
@pytest.mark.filterwarnings("ignore:this Bayesian network was trained with Monte-Carlo dropout")
def test_predict_on_cuda_equals_cpu():
    with np.load(REF / "reference.npz") as data:
        ref = {k: data[k] for k in data.files}
    kw = {"bitmask": ref["bitmask"], "uncertainty": "delta"}
    cpu = predict(REF / "model_raw", ref["flux"], ref["error"], device="cpu", **kw)
    gpu = predict(REF / "model_raw", ref["flux"], ref["error"], device="cuda", **kw)
    np.testing.assert_allclose(gpu.mean, cpu.mean, rtol=1e-4, atol=1e-4 * np.nanmax(np.abs(cpu.mean)))
    np.testing.assert_allclose(gpu.std, cpu.std, rtol=1e-3)
    np.testing.assert_array_equal(gpu.flags, cpu.flags)


@needs_cuda
@pytest.mark.parametrize("prefetch", ["process", "thread", False])
def test_catalog_run_on_cuda_equals_cpu(tmp_path, prefetch):
    """A survey run with the network on the GPU: every reader (the reading process is forked from a process
    that may have initialised CUDA already, and must not touch it) gives the CPU run's catalog."""
    from starlabels.data.hdf5 import DatasetWriter
    from starlabels.inference.catalog import read_catalog, run_catalog

    with np.load(REF / "reference.npz") as data:
        flux, error, bitmask = data["flux"], data["error"], data["bitmask"]
    path = tmp_path / "rows.h5"
    with DatasetWriter(path, flux.shape[1], "apstar", chunk_rows=2) as writer:
        writer.append(flux, error, bitmask, meta={"apogee_id": [f"s{i}" for i in range(len(flux))]})
    catalogs = {}
    for device in ("cuda", "cpu", "cuda"):  # CUDA is initialised before the second GPU run's fork
        out = tmp_path / f"{device}.parquet"
        run_catalog(REF / "model_raw", [path], out, rows_per_unit=2, uncertainty="delta", device=device,
                    prefetch=prefetch, overwrite=True)
        catalogs[device] = read_catalog(out)
    gpu, cpu = catalogs["cuda"], catalogs["cpu"]
    assert gpu["APOGEE_ID"].tolist() == cpu["APOGEE_ID"].tolist() == ["s0", "s1", "s2", "s3"]
    for column in ("TEFF", "LOGG", "FE_H"):
        np.testing.assert_allclose(gpu[column], cpu[column], rtol=1e-4)
        np.testing.assert_allclose(gpu[f"{column}_ERR"], cpu[f"{column}_ERR"], rtol=1e-3)
    np.testing.assert_array_equal(gpu["FLAG"], cpu["FLAG"])


@needs_cuda
@pytest.mark.parametrize("network", ["apogee_net", "bcnn"])
def test_training_step_on_cuda_matches_cpu(network):
    torch.manual_seed(0)
    net = ApogeeNet(3, 1024) if network == "apogee_net" else BayesianCNN(3, 1024, dropout=0.0)
    x, y = torch.randn(16, 1, 1024), torch.randn(16, 3)
    grads = {}
    for dev in ("cpu", "cuda"):
        model = net.to(dev).train()
        model.zero_grad()
        out = model(x.to(dev))
        mean = out[0] if isinstance(out, tuple) else out
        torch.nn.functional.mse_loss(mean, y.to(dev)).backward()
        grads[dev] = torch.cat([p.grad.flatten().cpu() for p in model.parameters()])
    torch.testing.assert_close(grads["cuda"], grads["cpu"], rtol=1e-3, atol=1e-5)


@needs_cuda
def test_mc_dropout_on_cuda_agrees_with_cpu_statistically():
    torch.manual_seed(0)
    net = BayesianCNN(3, 1024, dropout=0.3).eval()
    fn = PhysicalNetwork(net, torch.zeros(1024), torch.ones(1024), torch.zeros(3), torch.ones(3))
    flux = torch.randn(4, 1024)
    m_cpu, p_cpu = mc_dropout(fn, flux, n_samples=2000, batch_size=8000, seed=1)
    fn = fn.to("cuda")
    m_gpu, p_gpu = mc_dropout(fn, flux.cuda(), n_samples=2000, batch_size=8000, seed=1)
    se = torch.sqrt(2 * p_cpu["epistemic"] / 2000)
    assert torch.all((m_gpu.cpu() - m_cpu).abs() <= 5 * se)
    ratio = p_gpu["epistemic"].cpu() / p_cpu["epistemic"]
    assert torch.all((ratio > 0.85) & (ratio < 1.15))


def _ddp_worker(rank: int, world: int, port: int, out: str) -> None:
    import torch.distributed as dist

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("nccl", rank=rank, world_size=world)
    torch.cuda.set_device(rank)
    torch.manual_seed(0)  # same initial weights on both ranks
    net = torch.nn.parallel.DistributedDataParallel(BayesianCNN(3, 256, dropout=0.0).cuda(rank),
                                                    device_ids=[rank])
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    torch.manual_seed(1 + rank)  # different data per rank
    mean, _ = net(torch.randn(8, 1, 256, device=f"cuda:{rank}"))
    mean.square().mean().backward()
    opt.step()
    flat = torch.cat([p.detach().flatten() for p in net.parameters()]).cpu()
    torch.save(flat, f"{out}/rank{rank}.pt")
    dist.destroy_process_group()


@needs_two
def test_ddp_nccl_keeps_ranks_in_step(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    torch.multiprocessing.spawn(_ddp_worker, args=(2, port, str(tmp_path)), nprocs=2, join=True)
    a, b = torch.load(tmp_path / "rank0.pt"), torch.load(tmp_path / "rank1.pt")
    torch.testing.assert_close(a, b, rtol=0, atol=0)  # gradients were all-reduced
