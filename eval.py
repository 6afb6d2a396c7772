"""Evaluate a checkpoint: ``python eval.py ckpt_path=...`` (see conf/eval.yaml)."""

from pathlib import Path

from layerscope.apps.eval import main

if __name__ == "__main__":
    main(config_dir=Path(__file__).resolve().parent / "conf")
