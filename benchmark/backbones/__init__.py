"""The backbone zoo. Each module registers its encoders with ``@register_backbone``.

An encoder is an ``nn.Module`` with an ``out_dim`` attribute whose forward maps one modality's batch to
features of shape (B, out_dim). Factories take the run's :class:`~benchmark.config.ModelConfig` and the
dataset's per-modality ``backbone_args`` (for example ``in_chans``).
"""
