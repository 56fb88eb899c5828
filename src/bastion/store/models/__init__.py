"""All tables; importing this module registers them on ``Base.metadata``."""

from bastion.store.models.accounts import ApiKey, AuthSession, Lockout, User
from bastion.store.models.audit import AuditEvent, AuditHead
from bastion.store.models.catalog import DatasetRecord, ModelRecord, ModelVersionRecord
from bastion.store.models.federation import (
    Federation,
    FederationGuest,
    FederationParticipant,
    FederationRound,
    FederationUpdate,
)
from bastion.store.models.idempotency import IdempotencyRecord
from bastion.store.models.jobs import (
    DownloadKey,
    JobEvent,
    JobLogLine,
    JobWorker,
    SearchJournalEntry,
    TrainingJob,
    TrainingPrice,
)
from bastion.store.models.llm import LlmBaseModel
from bastion.store.models.projects import Project, ProjectMember
from bastion.store.models.sso import OidcIdentity, SignupRequest, SsoFlow

__all__ = [
    "ApiKey",
    "AuditEvent",
    "AuditHead",
    "AuthSession",
    "DatasetRecord",
    "DownloadKey",
    "Federation",
    "FederationGuest",
    "FederationParticipant",
    "FederationRound",
    "FederationUpdate",
    "IdempotencyRecord",
    "JobEvent",
    "JobLogLine",
    "JobWorker",
    "LlmBaseModel",
    "Lockout",
    "ModelRecord",
    "ModelVersionRecord",
    "OidcIdentity",
    "Project",
    "ProjectMember",
    "SearchJournalEntry",
    "SignupRequest",
    "SsoFlow",
    "TrainingJob",
    "TrainingPrice",
    "User",
]
