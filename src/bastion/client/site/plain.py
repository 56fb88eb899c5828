"""A site's part in an ordinary round: train once, seal and sign the update, send it, wait for the close.

The update is sealed to the server's X25519 key with the header (federation, round, participant,
nonce) as associated data and signed with the site's Ed25519 key (:func:`seal_update`). A round is
marked sent on disk once the server has it, so a restarted site does not send it twice.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from bastion.client.errors import BastionClientError
from bastion.client.site.base import WAIT_ROUND, Site, SiteError
from bastion.crypto import sealed
from bastion.federation.envelope import seal_update

ALREADY_RECEIVED = ("replayed_update", "duplicate_update")
LATE = ("round_closed", "round_not_open", "round_closing", "not_selected")


class PlainParticipant:
    """Sealed updates, one per round; :meth:`step` trains and sends at most once per round."""

    def __init__(self, site: Site) -> None:
        self.site = site

    def step(self, info: Mapping[str, Any]) -> str:
        return self.step_needed(info) or self.train_and_send()

    def advance(self, info: dict[str, Any]) -> dict[str, Any]:
        number = int(info["round"])
        if self.step_needed(info) is not None:
            self.site.emit("waiting", number, f"waiting for round {number} to close", info=info)
            return self.site.info(wait_round=number)
        outcome = self.train_and_send()
        # after sending, go straight to waiting for the round to close (one request, not two)
        return self.site.info(wait_round=number) if outcome == "sent" else self.site.info()

    def step_needed(self, info: Mapping[str, Any]) -> str | None:
        """``"wait_round"`` when this site has nothing to send in the current round, else None."""
        done = info["submitted"] or self.site.state.sent(int(info["round"]))
        if info["round_state"] != "open" or done or not info.get("selected", True):
            return WAIT_ROUND
        return None

    def train_and_send(self) -> str:
        """One round: fetch and verify the global model, train, seal, sign and send; returns the outcome."""
        site = self.site
        number, params, config = site.global_model()
        if site.state.sent(number):
            return "already_sent"
        site.emit("training", number, f"training round {number}")
        started = time.perf_counter()
        result = site.trainer.fit(params, config)
        metrics = {**result.metrics, **site.trainer.evaluate(result.params, config)}
        fit_seconds = time.perf_counter() - started
        message = seal_update(
            result.params,
            federation_id=site.federation_id,
            round=number,
            participant_id=site.state.data["participant_id"],
            num_samples=int(result.num_samples),
            server_public_key=sealed.decode_public_key(str(config["server_sealing_key"])),
            signing_key=site.key,
            metrics=metrics,
        )
        try:
            reply = site.call(
                "POST", "/update", content=message, headers={"Content-Type": "application/octet-stream"}
            ).json()
        except BastionClientError as exc:
            if exc.code in ALREADY_RECEIVED:
                site.state.mark_sent(number)
                return "already_sent"
            if exc.code in LATE:
                site.emit("late", number, f"round {number} closed before the update arrived ({exc.code})")
                return "late"
            raise SiteError(
                f"the server refused the update: {exc.message} ({exc.code})", code=exc.code
            ) from exc
        site.state.mark_sent(number)
        site.emit(
            "sent", number, f"round {number} sent", metrics=metrics, fit_seconds=fit_seconds, reply=reply
        )
        return "sent"
