"""Export a checkpoint: ``python export.py ckpt_path=... format=onnx`` (see conf/export.yaml)."""

from layerscope.apps.export import main

if __name__ == "__main__":
    main()
