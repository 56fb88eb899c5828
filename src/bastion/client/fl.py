"""The site runtime: join a federation, then train and send one sealed update per round until it ends.

A site never sends data, only model parameters, sealed to the server's X25519 key and signed with the
site's own Ed25519 key (generated at first start, kept 0600 in the state directory and registered
with the server at first contact). The server's signing key is pinned on first contact too, and every
global model must carry its signature, so a site never trains on weights or settings that did not
come from its coordinator. The state directory also records which rounds were sent, so a restarted
site resumes where it stopped; network errors are retried with exponential backoff.

Custom training loops subclass :class:`SiteTrainer` (``fit``, optionally ``evaluate``); the default,
:class:`bastion.client.fl_trainer.TorchTrainer`, trains the federation's model on local data.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import numpy as np

from bastion.client.errors import BastionClientError, RateLimitError, TransportError, from_response
from bastion.client.fl_secure import SecureParticipant
from bastion.crypto import sealed, signing
from bastion.errors import BastionError
from bastion.federation.envelope import seal_update
from bastion.federation.global_model import GlobalModel, verify_global_model

if TYPE_CHECKING:
    from pydantic import BaseModel

ALREADY_RECEIVED = ("replayed_update", "duplicate_update")
LATE = ("round_closed", "round_not_open", "round_closing", "not_selected")


@dataclass
class FitResult:
    params: Mapping[str, np.ndarray]
    num_samples: int
    metrics: dict[str, float] = field(default_factory=dict)


class SiteTrainer(ABC):
    """Hooks a site implements: ``fit`` trains from the global parameters; ``evaluate`` validates locally.

    ``config`` is the server-signed round config: ``model``, ``training``, ``strategy`` (e.g.
    ``proximal_mu``), ``evaluation`` and ``round``. Metrics returned by ``evaluate`` should be named
    ``val_*`` and may include ``val_num_samples``; the server weights them into the round's metrics.
    """

    def prepare(self, config: Mapping[str, Any]) -> None:
        """Called once before the site registers: load data, import frameworks, build the model."""
        return None

    def train_samples(self) -> int | None:
        """Training rows at this site, registered once as the most its updates may weigh."""
        return None

    @abstractmethod
    def fit(self, params: dict[str, np.ndarray], config: Mapping[str, Any]) -> FitResult: ...

    def evaluate(self, params: Mapping[str, np.ndarray], config: Mapping[str, Any]) -> dict[str, float]:
        return {}


class SiteError(Exception):
    """The site cannot go on (federation failed, credential refused, server key changed, ...)."""

    def __init__(self, message: str, code: str = "site_error") -> None:
        super().__init__(message)
        self.message, self.code = message, code


@dataclass(frozen=True)
class SiteEvent:
    kind: str  # joined, waiting, training, sent, late, retry, completed
    round: int | None
    message: str
    data: dict[str, Any] = field(default_factory=dict)


@dataclass
class Backoff:
    """Exponential backoff for network errors; gives up after ``give_up_after`` seconds of failures."""

    initial: float = 0.5
    factor: float = 2.0
    maximum: float = 15.0
    give_up_after: float = 600.0


class SiteState:
    """The local directory: the site's signing key (0600), the pinned server key and rounds sent."""

    def __init__(self, root: Path) -> None:
        self.root = root
        root.mkdir(parents=True, exist_ok=True)
        os.chmod(root, 0o700)
        self._file = root / "state.json"
        self.data: dict[str, Any] = json.loads(self._file.read_text()) if self._file.exists() else {}
        self.data.setdefault("sent_rounds", [])

    def signing_key(self) -> Any:
        path = self.root / "signing_key"
        if path.exists():
            return signing.private_key_from_bytes(
                signing.b64url_decode(path.read_text().strip(), expected_len=32)
            )
        key = signing.generate_signing_key()
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(signing.b64url_encode(signing.private_key_to_bytes(key)))
        return key

    def sent(self, round: int) -> bool:
        return round in self.data["sent_rounds"]

    def mark_sent(self, round: int) -> None:
        if round not in self.data["sent_rounds"]:
            self.data["sent_rounds"].append(round)
        self.save()

    def save(self) -> None:
        tmp = self._file.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            json.dump(self.data, fh, indent=1)
        os.replace(tmp, self._file)


def load_peer_keys(source: Mapping[str, Any] | list[Any]) -> dict[str, str]:
    """Participant id -> Ed25519 key, from ``{id: key}`` or the coordinator's participant list.

    Given to a site (``--peer-keys``), the list replaces trust on first use in secure aggregation: every
    session member must be in it with exactly that key. Share it out of band (not through the server).
    """
    pairs: dict[str, str] = {}
    if isinstance(source, list):
        for row in source:
            if not isinstance(row, Mapping) or "id" not in row:
                raise SiteError("each participant in the peer key list needs an id", code="bad_peer_keys")
            if row.get("signing_public_key"):
                pairs[str(row["id"])] = str(row["signing_public_key"])
    else:
        pairs = {str(k): str(v) for k, v in source.items()}
    for pid, key in pairs.items():
        try:
            signing.decode_public_key(key)
        except BastionError:
            raise SiteError(
                f"the peer key of {pid} is not an Ed25519 public key", code="bad_peer_keys"
            ) from None
    return pairs


def default_state_dir(federation_id: str, token: str) -> Path:
    """One directory per (federation, credential): a hash of the token, never the token itself."""
    return Path(".bastion-site") / f"{federation_id[:36]}-{hashlib.sha256(token.encode()).hexdigest()[:12]}"


class SiteClient:
    def __init__(
        self,
        server: str,
        federation_id: str,
        token: str,
        trainer: SiteTrainer,
        *,
        state_dir: Path | None = None,
        server_key: str | None = None,
        peer_keys: Mapping[str, str] | None = None,
        http: httpx.Client | None = None,
        verify: bool | str = True,
        poll_timeout: float = 20.0,
        backoff: Backoff | None = None,
        on_event: Callable[[SiteEvent], None] | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.federation_id = federation_id
        self.trainer = trainer
        self.state = SiteState(state_dir or default_state_dir(federation_id, token))
        self.key = self.state.signing_key()
        if server_key is not None:
            signing.decode_public_key(server_key)
            self._pin(server_key)
        self.peer_keys = load_peer_keys(peer_keys) if peer_keys is not None else None
        self.poll_timeout = poll_timeout
        self.backoff = backoff or Backoff()
        self.on_event = on_event or (lambda _e: None)
        self.sleep = sleep
        auth = {"Authorization": f"Bearer {token}"}
        if http is None:
            self.http = httpx.Client(
                base_url=server.rstrip("/"), headers=auth, timeout=poll_timeout + 30, verify=verify
            )
        else:
            self.http = http
            self.http.headers.update(auth)
        self._base = f"/api/v1/federations/{federation_id}/site"
        self._secure: SecureParticipant | None = None

    def close(self) -> None:
        self.http.close()

    # -- plumbing ---------------------------------------------------------------------------------
    def emit(self, kind: str, round: int | None, message: str, **data: Any) -> None:
        self.on_event(SiteEvent(kind, round, message, data))

    def _call(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """One request, retried with backoff on network errors, 5xx and 429; 4xx raise at once."""
        delay, failing_since = self.backoff.initial, None
        while True:
            error: BastionClientError
            try:
                response = self.http.request(method, self._base + path, **kwargs)
                if response.status_code < 400:
                    return response
                try:
                    body = response.json()
                except ValueError:
                    body = None
                error = from_response(response.status_code, body, response.headers)
                if response.status_code < 500 and not isinstance(error, RateLimitError):
                    raise error
            except httpx.HTTPError as exc:
                error = TransportError(f"cannot reach the server: {type(exc).__name__}", code="transport")
            failing_since = failing_since or time.monotonic()
            if time.monotonic() - failing_since > self.backoff.give_up_after:
                raise error
            wait = getattr(error, "retry_after", None) or delay
            self.emit("retry", None, f"{error.message}; retrying in {wait:.1f} s", code=error.code)
            self.sleep(wait)
            delay = min(delay * self.backoff.factor, self.backoff.maximum)

    def _pin(self, key: str) -> None:
        pinned = self.state.data.get("server_signing_key")
        if pinned is None:
            self.state.data["server_signing_key"] = key
            self.state.save()
        elif pinned != key:
            raise SiteError(
                "the server's signing key differs from the one pinned at first contact; refusing to continue",
                code="server_key_changed",
            )

    # -- protocol ---------------------------------------------------------------------------------
    def join(self) -> dict[str, Any]:
        """Register this site's public key (idempotent) and pin the server's signing key."""
        body: dict[str, Any] = {"signing_public_key": signing.encode_public_key(self.key)}
        samples = self.trainer.train_samples()
        if samples is not None:
            body["num_samples"] = int(samples)
        info: dict[str, Any] = self._call("POST", "/register", json=body).json()
        self._pin(info["server_signing_key"])
        self.state.data.update(participant_id=info["participant_id"], federation_id=self.federation_id)
        self.state.save()
        self.emit("joined", info.get("round"), f"joined as {info.get('name')}", info=info)
        return info

    def info(self, wait_round: int | None = None) -> dict[str, Any]:
        params = {"wait_round": wait_round, "timeout": self.poll_timeout} if wait_round is not None else None
        result: dict[str, Any] = self._call("GET", "/info", params=params).json()
        return result

    def run(self) -> dict[str, Any]:
        """Take part until the federation completes; returns its final state, raises SiteError on failure.

        The site gets ready (data loaded, model built) *before* it registers, because registering is
        what tells the coordinator it can start round 1's clock.
        """
        info = self.info()
        self._pin(info["server_signing_key"])
        if info["state"] in ("waiting", "running"):
            _number, _params, config = self.global_model()
            self.trainer.prepare(config)
        info = self.join()
        while True:
            if info["state"] == "completed":
                self.emit("completed", info["round"], "federation completed", info=info)
                return info
            if info["state"] == "failed":
                raise SiteError(
                    f"the federation failed: {info.get('failure_reason')}", code="federation_failed"
                )
            number = int(info["round"])
            if info.get("secure_aggregation"):
                info = self._secure_step(info)
                continue
            if self.step_needed(info) is not None:
                self.emit("waiting", number, f"waiting for round {number} to close", info=info)
                info = self.info(wait_round=number)
                continue
            outcome = self.train_and_send()
            # after sending, go straight to waiting for the round to close (one request, not two)
            info = self.info(wait_round=number) if outcome == "sent" else self.info()

    # -- secure aggregation -------------------------------------------------------------------------
    @property
    def secure(self) -> SecureParticipant:
        if self._secure is None:
            self._secure = SecureParticipant(self)
        return self._secure

    def step(self, info: Mapping[str, Any]) -> str:
        """One non-blocking move in the current round (train and send, or one secure-aggregation stage)."""
        if info.get("secure_aggregation"):
            return self.secure.step(info)
        return self.step_needed(info) or self.train_and_send()

    def step_needed(self, info: Mapping[str, Any]) -> str | None:
        """``"wait_round"`` when this site has nothing to send in the current round, else None."""
        done = info["submitted"] or self.state.sent(int(info["round"]))
        if info["round_state"] != "open" or done or not info.get("selected", True):
            return "wait_round"
        return None

    def _secure_step(self, info: dict[str, Any]) -> dict[str, Any]:
        """Advance the secure round, then wait (long-poll) for whatever it waits on; returns fresh info.

        After acting on a stage, the site long-polls for the session to leave that stage and acts on the
        long poll's answer directly (no ``/info`` + ``/secagg`` pair per stage). Anything unexpected
        (another round, a closed round, a poll that timed out) goes back through ``/info``.
        """
        number = int(info["round"])
        view: dict[str, Any] | None = None
        while True:
            outcome = self.secure.step(info, view)
            if outcome == "wait_round":
                if info.get("round_state") == "open" and not info.get("selected", True):
                    self.emit("waiting", number, f"not drawn for round {number}", info=info)
                return self.info(wait_round=number)
            last = self.secure.last_view
            if last.get("round") != number:
                return self.info()
            waited = (last.get("session"), last.get("stage"))
            view = self.secagg_state(wait_session=waited[0], wait_stage=waited[1])
            if (
                view.get("round") != number
                or view.get("round_state") != "open"
                or (view.get("session"), view.get("stage")) == waited
            ):
                return self.info()

    def secagg_state(self, wait_session: str | None = None, wait_stage: str | None = None) -> dict[str, Any]:
        params: dict[str, Any] | None = None
        if wait_stage is not None:
            params = {"wait_stage": wait_stage, "timeout": self.poll_timeout}
            if wait_session is not None:
                params["wait_session"] = wait_session
        result: dict[str, Any] = self._call("GET", "/secagg", params=params).json()
        return result

    def secagg_send(self, kind: str, message: BaseModel) -> dict[str, Any]:
        result: dict[str, Any] = self._call(
            "POST",
            f"/secagg/{kind}",
            content=message.model_dump_json(),
            headers={"Content-Type": "application/json"},
        ).json()
        return result

    def global_model(self) -> tuple[int, dict[str, np.ndarray], dict[str, Any]]:
        """The open round's model, verified against the pinned server key: (round, params, config)."""
        model = GlobalModel.from_bytes(self._call("GET", "/model").content)
        pinned = self.state.data.get("server_signing_key")
        if pinned is None:
            raise SiteError("no server signing key is pinned yet: join first", code="not_joined")
        params = dict(
            verify_global_model(signing.decode_public_key(pinned), model, federation_id=self.federation_id)
        )
        return model.round, params, {**model.config, "round": model.round}

    def train_and_send(self) -> str:
        """One round: fetch and verify the global model, train, seal, sign and send; returns the outcome."""
        number, params, config = self.global_model()
        if self.state.sent(number):
            return "already_sent"
        self.emit("training", number, f"training round {number}")
        started = time.perf_counter()
        result = self.trainer.fit(params, config)
        metrics = {**result.metrics, **self.trainer.evaluate(result.params, config)}
        fit_seconds = time.perf_counter() - started
        message = seal_update(
            result.params,
            federation_id=self.federation_id,
            round=number,
            participant_id=self.state.data["participant_id"],
            num_samples=int(result.num_samples),
            server_public_key=sealed.decode_public_key(str(config["server_sealing_key"])),
            signing_key=self.key,
            metrics=metrics,
        )
        try:
            reply = self._call(
                "POST", "/update", content=message, headers={"Content-Type": "application/octet-stream"}
            ).json()
        except BastionClientError as exc:
            if exc.code in ALREADY_RECEIVED:
                self.state.mark_sent(number)
                return "already_sent"
            if exc.code in LATE:
                self.emit("late", number, f"round {number} closed before the update arrived ({exc.code})")
                return "late"
            raise SiteError(
                f"the server refused the update: {exc.message} ({exc.code})", code=exc.code
            ) from exc
        self.state.mark_sent(number)
        self.emit(
            "sent", number, f"round {number} sent", metrics=metrics, fit_seconds=fit_seconds, reply=reply
        )
        return "sent"


def run_site(client: SiteClient) -> dict[str, Any]:
    """Run and always release the HTTP connection; library errors surface as :class:`SiteError`."""
    try:
        return client.run()
    except BastionError as exc:
        raise SiteError(exc.message, code=exc.code) from exc
    finally:
        client.close()
