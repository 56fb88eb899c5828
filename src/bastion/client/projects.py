"""Projects and their members, as the SDK's ``client.projects`` namespace."""

from __future__ import annotations

import builtins
from typing import Any

from bastion.client.transport import Transport, operation
from bastion.contract.projects import Member, Project, ProjectDetail

BASE = "/api/v1/projects"


class Projects:
    """Shared spaces: create, list, rename, and manage who is in them with which role."""

    def __init__(self, transport: Transport) -> None:
        self.t = transport

    @operation("GET", "/api/v1/projects/domains")
    def domains(self) -> dict[str, list[str]]:
        """The server's domain taxonomy: domain -> allowed subdomains (empty: any)."""
        result: dict[str, list[str]] = self.t.json("GET", f"{BASE}/domains")["domains"]
        return result

    @operation("POST", "/api/v1/projects")
    def create(self, name: str, domain: str, subdomain: str | None = None) -> ProjectDetail:
        body: dict[str, Any] = {"name": name, "domain": domain}
        if subdomain is not None:
            body["subdomain"] = subdomain
        return ProjectDetail.model_validate(self.t.json("POST", BASE, json=body))

    @operation("GET", "/api/v1/projects")
    def list(self) -> list[Project]:
        return [Project.model_validate(p) for p in self.t.pages(BASE)]

    @operation("GET", "/api/v1/projects/{project_id}")
    def get(self, project_id: str) -> ProjectDetail:
        return ProjectDetail.model_validate(self.t.json("GET", f"{BASE}/{project_id}"))

    @operation("PATCH", "/api/v1/projects/{project_id}")
    def update(
        self,
        project_id: str,
        *,
        name: str | None = None,
        domain: str | None = None,
        subdomain: str | None = None,
    ) -> ProjectDetail:
        body = {
            k: v for k, v in {"name": name, "domain": domain, "subdomain": subdomain}.items() if v is not None
        }
        return ProjectDetail.model_validate(self.t.json("PATCH", f"{BASE}/{project_id}", json=body))

    @operation("POST", "/api/v1/projects/{project_id}/members")
    def add_member(self, project_id: str, user: str, role: str = "member") -> Member:
        body = {"user": user, "role": role}
        return Member.model_validate(self.t.json("POST", f"{BASE}/{project_id}/members", json=body))

    @operation("PATCH", "/api/v1/projects/{project_id}/members/{user}")
    def set_role(self, project_id: str, user: str, role: str) -> Member:
        path = f"{BASE}/{project_id}/members/{user}"
        return Member.model_validate(self.t.json("PATCH", path, json={"role": role}))

    @operation("DELETE", "/api/v1/projects/{project_id}/members/{user}")
    def remove_member(self, project_id: str, user: str) -> None:
        self.t.json("DELETE", f"{BASE}/{project_id}/members/{user}")

    @operation("GET", "/api/v1/projects/{project_id}/analytics/contributions")
    def contributions(self, project_id: str) -> builtins.list[dict[str, Any]]:
        return list(self.analytics(project_id, "contributions")["data"])

    @operation("GET", "/api/v1/projects/{project_id}/analytics/models")
    def model_performance(self, project_id: str) -> builtins.list[dict[str, Any]]:
        return list(self.analytics(project_id, "models")["data"])

    @operation("GET", "/api/v1/projects/{project_id}/analytics/training")
    def training_history(self, project_id: str) -> dict[str, Any]:
        return self.analytics(project_id, "training")

    @operation("GET", "/api/v1/projects/{project_id}/analytics/resources")
    def resource_use(self, project_id: str) -> dict[str, Any]:
        return self.analytics(project_id, "resources")

    @operation("GET", "/api/v1/projects/{project_id}/analytics/federations")
    def federation_participation(self, project_id: str) -> builtins.list[dict[str, Any]]:
        return list(self.analytics(project_id, "federations")["data"])

    def analytics(self, project_id: str, view: str) -> dict[str, Any]:
        """One analytics view (contributions, models, training, resources, federations) as JSON."""
        result: dict[str, Any] = self.t.json("GET", f"{BASE}/{project_id}/analytics/{view}")
        return result
