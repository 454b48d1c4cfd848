"""APOGEE Net as printed in Olney et al. (2020, AJ 159, 182), Appendix B — benchmark reference only.

Reconstructed from the OCR'd paper text (/work/shared/seeds/000_*.txt) with only the OCR typos
fixed, so ``bench/train_throughput.py`` can time the authors' own code next to ours:

- ``convl``/``convll``/``convl2``/``fcl``/``conv6é`` → ``conv1``/``conv11``/``conv12``/``fc1``/``conv6``
- ``nn.Convld``/``F.max_poolld`` → ``nn.Conv1d``/``F.max_pool1d``
- ``def_ _init_ _``/``_ _init__`` → ``__init__``; ``64x133x1`` → ``64 * 133 * 1``
- ``Xx.view(—1, ...)`` → ``x.view(-1, ...)``; ``num_features * = s`` → ``num_features *= s``
- ``super(Net, self)`` names a class that does not exist here (the code was evidently renamed
  from PyTorch's tutorial ``Net``); it is written ``super().__init__()`` so the module can be built.

Everything else — layer sizes, the dropout placed *before* the ReLU of the dense layers, the Python
loop of ``num_flat_features`` — is kept exactly as printed. Not part of the starlabels package.
"""

from __future__ import annotations

import torch.nn as nn
import torch.nn.functional as F


class APOGEE_Net(nn.Module):  # noqa: N801 - the paper's name
    def __init__(self, num_layers, num_targets, drop_p=0.0):
        super().__init__()
        # 3 input channels, 6 output channels, convolution
        # kernel
        self.conv1 = nn.Conv1d(num_layers, 8, 3, padding=1)
        self.conv2 = nn.Conv1d(8, 8, 3, padding=1)
        self.conv3 = nn.Conv1d(8, 16, 3, padding=1)
        self.conv4 = nn.Conv1d(16, 16, 3, padding=1)
        self.conv5 = nn.Conv1d(16, 16, 3, padding=1)
        self.conv6 = nn.Conv1d(16, 16, 3, padding=1)
        self.conv7 = nn.Conv1d(16, 32, 3, padding=1)
        self.conv8 = nn.Conv1d(32, 32, 3, padding=1)
        self.conv9 = nn.Conv1d(32, 32, 3, padding=1)
        self.conv10 = nn.Conv1d(32, 32, 3, padding=1)
        self.conv11 = nn.Conv1d(32, 64, 3, padding=1)
        self.conv12 = nn.Conv1d(64, 64, 3, padding=1)

        # an affine operation: y = Wx + b

        self.fc1 = nn.Linear(64 * 133 * 1, 512)
        self.fc1_dropout = nn.Dropout(p=drop_p)
        self.fc2 = nn.Linear(512, 512)

        self.fc3 = nn.Linear(512, num_targets)

    def forward(self, x):
        # Max pooling over a (2) window

        x = F.max_pool1d(F.relu(self.conv2(F.relu(self.conv1(x)))), 2)
        x = F.max_pool1d(F.relu(self.conv4(F.relu(self.conv3(x)))), 2)
        x = F.max_pool1d(F.relu(self.conv6(F.relu(self.conv5(x)))), 2)
        x = F.max_pool1d(F.relu(self.conv8(F.relu(self.conv7(x)))), 2)
        x = F.max_pool1d(F.relu(self.conv10(F.relu(self.conv9(x)))), 2)
        x = F.max_pool1d(F.relu(self.conv12(F.relu(self.conv11(x)))), 2)
        x = x.view(-1, self.num_flat_features(x))

        x = F.relu(self.fc1_dropout(self.fc1(x)))

        x = F.relu(self.fc1_dropout(self.fc2(x)))

        x = self.fc3(x)

        return x

    def num_flat_features(self, x):
        size = x.size()[1:]  # all dimensions except the batch dimension
        num_features = 1
        for s in size:
            num_features *= s
        return num_features
