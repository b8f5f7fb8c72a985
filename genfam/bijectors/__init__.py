"""Flow layers in the style of distrax bijectors, as Flax Linen modules.

Each bijector has `forward_and_log_det(x) -> (y, log_det [B])` and
`inverse_and_log_det(y) -> (x, log_det [B])`, log-dets in nats summed over
every non-batch dimension. One bijector per file.
"""
from genfam.bijectors.actnorm import ActNorm
from genfam.bijectors.base import Bijector
from genfam.bijectors.chain import Chain
from genfam.bijectors.conditional_affine import ConditionalAffine
from genfam.bijectors.conv1x1 import Conv1x1
from genfam.bijectors.coupling import AffineCoupling
from genfam.bijectors.logit import Logit
from genfam.bijectors.lu_conv1x1 import LUConv1x1
from genfam.bijectors.scaling import Scaling
from genfam.bijectors.squeeze import Squeeze

__all__ = ["ActNorm", "AffineCoupling", "Bijector", "Chain", "ConditionalAffine", "Conv1x1",
           "Logit", "LUConv1x1", "Scaling", "Squeeze"]
