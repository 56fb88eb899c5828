"""The site side of federated learning: the runtime behind ``bastion fl client`` and its parts.

``runtime`` (:class:`~.runtime.SiteClient`, ``run_site``) drives a site through a federation (join,
rounds, retries) on the SDK's one transport and picks a participant per round: ``plain`` (sealed
updates) or ``secure`` (SecAgg+ masked inputs). Both depend only on ``base`` (the shared types and the
:class:`~.base.Site` protocol) and ``state``, never on each other or on the runtime. ``trainer``
(PyTorch) and ``lora`` (federated LoRA) are the built-in :class:`~.base.SiteTrainer` implementations.

This file imports nothing, so importing one participant loads neither the other nor the runtime.
"""
