"""Evaluate a checkpoint: ``python eval.py ckpt_path=...`` (see conf/eval.yaml)."""

from layerscope.apps.eval import main

if __name__ == "__main__":
    main()
