"""Predict image classes: ``python predict.py ckpt_path=... input=...`` (see conf/predict.yaml)."""

from layerscope.apps.predict import main

if __name__ == "__main__":
    main()
