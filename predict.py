"""Predict image classes: ``python predict.py ckpt_path=... input=...`` (see conf/predict.yaml)."""

from pathlib import Path

from layerscope.apps.predict import main

if __name__ == "__main__":
    main(config_dir=Path(__file__).resolve().parent / "conf")
