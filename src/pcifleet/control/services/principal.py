"""Who is asking: the role and scope a bearer token grants, checked by every use case.

Three roles, as the API promises them:

- ``admin``: everything;
- ``member``: bound to one project; sees and changes only that project's instances and
  private groups (public groups are visible to everyone);
- ``agent``: bound to one host name; may only register and report that host.

The rules live here, next to the data they guard, so the HTTP layer and the services ask
the same questions and never re-implement them.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from pcifleet.domain.errors import Forbidden, InvalidInput


class Role(enum.StrEnum):
    ADMIN = "admin"
    MEMBER = "member"
    AGENT = "agent"


@dataclass(frozen=True, slots=True)
class Principal:
    """The authenticated caller (from a token, or the single-user mode's implicit admin)."""

    role: Role
    #: the project of a member (None for admins and agents)
    project: str | None = None
    #: the host of an agent (None for admins and members)
    host: str | None = None
    #: the token's name, for logs and audit
    name: str = ""

    def __post_init__(self) -> None:
        if self.role is Role.MEMBER and not self.project:
            raise InvalidInput("a member token needs a project", field="project", rule="required")
        if self.role is Role.AGENT and not self.host:
            raise InvalidInput("an agent token needs a host", field="host", rule="required")

    @property
    def is_admin(self) -> bool:
        return self.role is Role.ADMIN

    def require_admin(self, action: str) -> None:
        if not self.is_admin:
            raise Forbidden(f"{action} needs the admin role (this token is {self.role})")

    def require_user(self, action: str) -> None:
        """Admins and members act on the API; agents only report their host."""
        if self.role is Role.AGENT:
            raise Forbidden(f"{action} is not allowed to an agent token")

    def require_host(self, host: str, action: str) -> None:
        """Agents may only touch their own host; admins any; members none."""
        if self.is_admin:
            return
        if self.role is Role.AGENT and self.host == host:
            return
        raise Forbidden(f"{action} of host {host!r} is not allowed to this {self.role} token")

    def can_see_project(self, project: str | None) -> bool:
        """Public things (project None) are visible to all; private ones to their project."""
        return project is None or self.is_admin or self.project == project

    def require_project(self, project: str, action: str) -> None:
        """Admins act for any project; a member only for its own."""
        if self.is_admin or (self.role is Role.MEMBER and self.project == project):
            return
        raise Forbidden(f"{action} for project {project!r} is not allowed to this token")


#: the caller in single-user mode (local demo) and for in-process tools
LOCAL_ADMIN = Principal(Role.ADMIN, name="local")
