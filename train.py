"""Train a model: ``python train.py model=deep`` (see conf/train.yaml for every option)."""

from layerscope.apps.train import main

if __name__ == "__main__":
    main()
