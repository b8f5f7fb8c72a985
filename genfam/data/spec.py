"""What a family may know about a dataset: shape, bins, classes."""
import dataclasses
import math


@dataclasses.dataclass(frozen=True)
class DatasetSpec:
  """Static facts of a dataset, passed to families as plain values.

  name:        the dataset's name in configs.
  image_shape: (H, W, C) as stored; D = H * W * C is the bits/dim denominator.
  num_bins:    K grey levels per stored pixel (256 for 8-bit, 17 for digits).
  class_names: one name per label.
  num_train, num_test: split sizes.
  """
  name: str
  image_shape: tuple
  num_bins: int
  class_names: tuple
  num_train: int = 0
  num_test: int = 0

  @property
  def num_classes(self) -> int:
    return len(self.class_names)

  @property
  def num_dims(self) -> int:
    return int(math.prod(self.image_shape))
