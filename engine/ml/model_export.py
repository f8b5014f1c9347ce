"""A run's best global model as a standalone `save_pretrained` folder.

    export_model("runs/<id>", "my-model")    # then AutoModelForCausalLM.from_pretrained("my-model")

Full fine-tuning keeps the best model whole in `checkpoints/best`; a LoRA run keeps only the
adapter there, so its export loads the base model, applies the adapter and merges it into the
weights (peft's `merge_and_unload`). Either way the folder holds the model and its tokenizer and
needs neither fedtui nor peft to load.
"""

from __future__ import annotations

import os
import shutil
import warnings
from pathlib import Path

from peft import PeftModel
from transformers import AutoModelForCausalLM, AutoTokenizer

from engine.core.config_files import load_config
from engine.core.errors import FedtuiError
from engine.ml.model import load_base_model, quiet_transformers
from engine.record import checkpoints
from engine.record.run_folders import open_run


def export_model(run_dir: str | Path, out: str | Path) -> Path:
    run_dir, out = Path(run_dir), Path(out)
    best = _best_checkpoint(run_dir)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise FedtuiError(f"{out} already exists and is not an empty folder")
    if not out.parent.is_dir():
        raise FedtuiError(f"cannot write {out}: folder {out.parent} does not exist")
    model = _merged_model(run_dir, best)
    tokenizer = AutoTokenizer.from_pretrained(best)  # nosec B615
    tmp = out.parent / f".{out.name}.export-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        if out.exists():
            out.rmdir()
        os.rename(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out


def _best_checkpoint(run_dir: Path) -> Path:
    open_run(run_dir)  # a run folder at all (raises RunFolderError otherwise)
    best = run_dir / "checkpoints" / "best"
    if checkpoints.read_info(best) is None:
        raise FedtuiError(
            f"run {run_dir.name} has no best model checkpoint to export (runs "
            f"recorded before checkpoints, or imported from a report, have none)"
        )
    return best


def _merged_model(run_dir: Path, best: Path):
    quiet_transformers()
    if not (best / "adapter_config.json").is_file():  # full fine-tuning: the whole model
        return AutoModelForCausalLM.from_pretrained(best)  # nosec B615
    config = load_config(run_dir / "config.toml")
    base = load_base_model(config)
    with warnings.catch_warnings():  # peft calls a transformers API deprecated for v6
        warnings.simplefilter("ignore", FutureWarning)
        return PeftModel.from_pretrained(base, best).merge_and_unload()
