"""Evaluation data sets: readers for their real on-disk formats, and their download sources.

* ``digits``: scikit-learn's bundled 8x8 digits (the test split the embedded model was scored on);
* ``mnist`` and ``fashion-mnist``: IDX files (``t10k-images-idx3-ubyte[.gz]`` and the labels);
* ``cifar10`` and ``cifar100``: the python batches (``test_batch``, or ``test``), read with an
  unpickler that accepts only the plain containers and numpy arrays those files hold;
* ``imagenet``: the validation set as class folders (``n01440764/*.JPEG``, classes in sorted
  synset order, as torchvision's ImageFolder), or flat image files with a labels file
  (``NAME LABEL`` per line, a class index or a synset) and an optional synset map.

Every reader yields ``(images, labels)`` in batches: uint8 images ``[N, H, W, C]`` (``C`` 1 for
grayscale) or, for ``digits``, float32 in its own 0..16 range, and int64 labels. Bad files give a
:class:`DatasetError` that says which file and what is wrong.
"""

from __future__ import annotations

from mlms_ir.datasets.readers import (
    DATASETS,
    Dataset,
    DatasetError,
    open_dataset,
)

__all__ = ["DATASETS", "Dataset", "DatasetError", "open_dataset"]
