"""All tables; importing this module registers them on ``Base.metadata``."""

from bastion.store.tables.accounts import ApiKey, AuthSession, Lockout, User
from bastion.store.tables.audit import AuditEvent, AuditHead
from bastion.store.tables.catalog import DatasetRecord, ModelRecord, ModelVersionRecord
from bastion.store.tables.federation import (
    Federation,
    FederationGuest,
    FederationParticipant,
    FederationRound,
    FederationUpdate,
)
from bastion.store.tables.idempotency import IdempotencyRecord
from bastion.store.tables.jobs import (
    DownloadKey,
    JobEvent,
    JobLogLine,
    JobWorker,
    SearchJournalEntry,
    TrainingJob,
    TrainingPrice,
)
from bastion.store.tables.llm import LlmBaseModel
from bastion.store.tables.projects import Project, ProjectMember
from bastion.store.tables.sso import OidcIdentity, SignupRequest, SsoFlow

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
