"""The hooked decoder: components, position encodings, and the full model."""

from mmicl_interp.model.transformer import ICLTransformer, max_pos_shift, parameter_count

__all__ = ["ICLTransformer", "max_pos_shift", "parameter_count"]
