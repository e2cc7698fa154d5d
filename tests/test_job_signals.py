"""A signal to every process of a job (scancel, a pre-emption) also kills the helper processes
of wandb and of megatron's checkpoint writer, while training goes on to save its checkpoint:
both must survive that. Each case runs in a process of its own (it kills that process's
children)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("job_signals")]

WANDB = """
import json, logging, signal, sys, time
import psutil
from megatron_rrtf.config import load_config
from megatron_rrtf.training.metrics import MetricsLogger

warnings = []
class Catch(logging.Handler):
    def emit(self, record):
        warnings.append(record.getMessage())
logging.getLogger("megatron_rrtf.training.metrics").addHandler(Catch(logging.WARNING))
cfg = load_config("configs/tiny.yaml", [f"logging.run_dir={sys.argv[1]}",
                                        "logging.wandb_mode=offline", "logging.progress_bar=false"])
metrics = MetricsLogger(cfg, total_steps=3, start_step=0, enabled=True)
metrics.log(dict(kind="train", step=1, loss=2.0, lr=0.1))
services = [p for p in psutil.Process().children(recursive=True) if p.name().startswith("wandb")]
for p in services:
    p.send_signal(signal.SIGTERM)
psutil.wait_procs(services, timeout=10)
time.sleep(0.5)
error = None
try:
    metrics.log(dict(kind="train", step=2, loss=1.5, lr=0.1))
    metrics.log(dict(kind="train", step=3, loss=1.0, lr=0.1))
    metrics.close()
except Exception as exc:
    error = f"{type(exc).__name__}: {exc}"
print("RESULT " + json.dumps(dict(services=len(services), error=error, warnings=warnings)))
"""


def test_a_dead_wandb_service_turns_wandb_off_and_metrics_go_on(tmp_path):
    result = _run(WANDB, tmp_path)
    assert result["services"] >= 1, "wandb (offline) runs a service process"
    assert result["error"] is None                      # raised ConnectionResetError before
    assert [json.loads(x)["step"] for x in
            (tmp_path / "metrics.jsonl").read_text().splitlines()] == [1, 2, 3]
    stopped = [w for w in result["warnings"] if "wandb stopped working" in w]
    assert len(stopped) == 1                            # said once, then wandb is off


CHECKPOINT = """
import json, signal, sys
import psutil
sys.path.insert(0, "tests")
import engine_workers as w
from pathlib import Path
from megatron_rrtf.parallel.init import process_groups
from megatron_rrtf.training.loop import LoopSpec, Trainer
from megatron_rrtf.training.setup import build_model_state
from pretrain.forward import STAT_NAMES, make_forward_step

cfg = w.engine_config(Path(sys.argv[1]))
with process_groups(cfg.parallel, 0):
    state = build_model_state(cfg, w.VOCAB)
    spec = LoopSpec(source=w.SyntheticBatches(8, 2), forward_step=make_forward_step(False),
                    stat_names=STAT_NAMES, tokens_per_sample=w.SEQ)
    trainer = Trainer(cfg, state, spec)
    trainer.train_step()
    trainer.save()                 # starts the writer's helper processes
    helpers = psutil.Process().children(recursive=True)
    for p in helpers:
        p.send_signal(signal.SIGTERM)
    psutil.wait_procs(helpers, timeout=10)
    trainer.train_step()
    error = None
    try:
        saved = str(trainer.save())
    except Exception as exc:
        error, saved = f"{type(exc).__name__}: {exc}", None
print("RESULT " + json.dumps(dict(services=len(helpers), error=error, saved=saved)))
"""


def test_a_dead_checkpoint_writer_helper_is_replaced_and_the_save_succeeds(tmp_path):
    result = _run(CHECKPOINT, tmp_path)
    assert result["services"] >= 1
    assert result["error"] is None                      # BrokenPipeError before the fix
    assert result["saved"].endswith("step_00000002")
    assert (tmp_path / "checkpoints" / "latest").read_text().strip() == "step_00000002"


def _run(body: str, run_dir: Path) -> dict:
    proc = subprocess.run([sys.executable, "-c", body, str(run_dir)], cwd=REPO,
                          capture_output=True, text=True, timeout=300)
    lines = [x for x in proc.stdout.splitlines() if x.startswith("RESULT ")]
    assert lines, proc.stdout[-3000:] + proc.stderr[-3000:]
    return json.loads(lines[-1][len("RESULT "):])
