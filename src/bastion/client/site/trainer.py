"""The default site trainer: the federation's PyTorch model on this site's local data.

It builds the model from the server-signed JSON config (never from pickled code), trains with the
round's settings (epochs, learning rate, batch size, momentum, FedProx's ``proximal_mu``) and reports
``train_loss`` plus ``val_loss``/``val_accuracy`` on the site's validation split.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from bastion.client.site.base import FitResult, SiteTrainer
from bastion.federation.sitedata import SiteData, load_site_data


class TorchTrainer(SiteTrainer):
    def __init__(
        self,
        source: str,
        *,
        partition: tuple[int, int] | None = None,
        alpha: float | None = None,
        threads: int | None = None,
        seed: int = 0,
    ) -> None:
        self.source, self.partition, self.alpha = source, partition, alpha
        self.threads, self.seed = threads, seed
        self._data: SiteData | None = None
        self._data_key: str | None = None
        self._model: Any = None

    def data(self, config: Mapping[str, Any]) -> SiteData:
        key = repr((config["model"], config.get("evaluation"), config.get("features")))
        if self._data is None or self._data_key != key:
            self._data = load_site_data(
                self.source,
                dict(config["model"]),
                dict(config.get("evaluation") or {}),
                partition=self.partition,
                alpha=self.alpha,
                features=config.get("features"),
            )
            self._data_key, self._model = key, None
        return self._data

    def _module(self, config: Mapping[str, Any], params: Mapping[str, np.ndarray]) -> Any:
        import torch

        from bastion.ml import fl_models

        threads = self.threads or (1 if config["model"].get("type") == "tabular_mlp" else None)
        if threads:
            torch.set_num_threads(threads)
        if self._model is None:
            self._model = fl_models.build_model(config["model"])
        fl_models.set_parameters(self._model, params)
        return self._model

    def prepare(self, config: Mapping[str, Any]) -> None:
        """Load the data and warm torch up now (its first training step imports seconds' worth of
        modules), so the site is ready to train the moment it registers."""
        from bastion.ml import fl_models

        data = self.data(config)
        self._train_samples = int(data.num_train)
        scratch = fl_models.build_model(config["model"])
        fl_models.fit(scratch, data.X_train[:2], data.y_train[:2], epochs=1, lr=1e-3, batch_size=2)

    def train_samples(self) -> int | None:
        return getattr(self, "_train_samples", None)

    def fit(self, params: dict[str, np.ndarray], config: Mapping[str, Any]) -> FitResult:
        from bastion.ml import fl_models

        data = self.data(config)
        model = self._module(config, params)
        training = dict(config.get("training") or {})
        strategy = dict(config.get("strategy") or {})
        result = fl_models.fit(
            model,
            data.X_train,
            data.y_train,
            epochs=int(training.get("epochs", 1)),
            lr=float(training.get("lr", 0.05)),
            batch_size=int(training.get("batch_size", 32)),
            prox_mu=float(strategy.get("proximal_mu", 0.0)),
            global_params=params,
            momentum=float(training.get("momentum", 0.0)),
            seed=self.seed * 100_003 + int(config.get("round", 0)) * 101 + (self.partition or (0, 0))[0],
        )
        return FitResult(fl_models.get_parameters(model), data.num_train, {"train_loss": result["loss"]})

    def evaluate(self, params: Mapping[str, np.ndarray], config: Mapping[str, Any]) -> dict[str, float]:
        from bastion.ml import fl_models

        data = self.data(config)
        if data.num_val == 0:
            return {}
        result = fl_models.evaluate(self._module(config, params), data.X_val, data.y_val)
        return {
            "val_loss": result["loss"],
            "val_accuracy": result["accuracy"],
            "val_num_samples": float(data.num_val),
        }
