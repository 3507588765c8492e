"""Recipe: cifar100 shred (see recipes/README.md).

Paper settings by default (Arponen & Bishop, arXiv 2005.04917: 64 bits, gamma 0.1,
rho 2, Beta(0.1, 0.1)); every TrainConfig field is a flag, e.g.::

    python recipes/cifar100_shred.py --backbone convnext_tiny --bits 32 --lambda-kl 0.5
    accelerate launch recipes/cifar100_shred.py --data /data/...
"""

import os
import sys

from pml_shrewd.cli import main

CONFIG = os.path.join(os.path.dirname(os.path.abspath(__file__)), "configs", "cifar100_shred.json")

if __name__ == "__main__":
    sys.exit(main(["train", "--config", CONFIG, *sys.argv[1:]]))
