"""What a family may know about a dataset: shape, bins, classes, caption vocabulary."""
import dataclasses
import math

from genfam.data import captions


@dataclasses.dataclass(frozen=True)
class DatasetSpec:
  """Static facts of a dataset, passed to families as plain values.

  name:        the dataset's name in configs.
  image_shape: (H, W, C) as stored; D = H * W * C is the bits/dim denominator.
  num_bins:    K grey levels per stored pixel (256 for 8-bit, 17 for digits).
  class_names: one name per label.
  num_train, num_test: split sizes.
  vocabulary:  caption words; token id = index, 0 = '<pad>', 1 = '<unk>' (one
               vocabulary shared by all datasets: `genfam.data.captions`).
  caption_length: L, the fixed length of a batch's `caption` [B, L] (right-padded with 0).
  attribute_names: the A measured attributes, the columns of a batch's `attributes` [B, A].
  attribute_values: per attribute, the names of its classes (`attributes[:, a]` indexes them).
  """
  name: str
  image_shape: tuple
  num_bins: int
  class_names: tuple
  num_train: int = 0
  num_test: int = 0
  vocabulary: tuple[str, ...] = captions.VOCABULARY
  caption_length: int = captions.CAPTION_LENGTH
  attribute_names: tuple[str, ...] = captions.ATTRIBUTE_NAMES
  attribute_values: tuple[tuple[str, ...], ...] = captions.ATTRIBUTE_VALUES

  @property
  def num_classes(self) -> int:
    return len(self.class_names)

  @property
  def num_dims(self) -> int:
    return int(math.prod(self.image_shape))

  @property
  def vocab_size(self) -> int:
    return len(self.vocabulary)

  @property
  def num_attributes(self) -> int:
    return len(self.attribute_names)
