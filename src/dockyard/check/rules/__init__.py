"""One module per rule family; :func:`make_checks` builds the checks a policy enables."""

from __future__ import annotations

from dockyard.check.findings import Check
from dockyard.check.policy import Policy
from dockyard.check.rules.base import BaseCheck, OpenBase
from dockyard.check.rules.config import ConfigCheck
from dockyard.check.rules.files import FilesCheck
from dockyard.check.rules.labels import LabelsCheck
from dockyard.check.rules.packages import PackagesCheck
from dockyard.check.rules.secrets import SecretsCheck
from dockyard.check.rules.size import MaxLayersCheck, MaxSizeCheck
from dockyard.check.rules.user import UserCheck


def make_checks(policy: Policy, open_base: OpenBase) -> list[Check]:
    """A fresh check for each rule ``policy`` sets, in the policy's field order."""
    p = policy
    checks: list[Check | None] = [
        p.user and UserCheck(p.user),
        p.max_size and MaxSizeCheck(p.max_size),
        p.max_layers and MaxLayersCheck(p.max_layers),
        p.base and BaseCheck(p.base, open_base),
        p.labels and LabelsCheck(p.labels),
        p.secrets and SecretsCheck(p.secrets),
        p.files and FilesCheck(p.files),
        p.config and ConfigCheck(p.config),
        p.packages and PackagesCheck(p.packages),
    ]
    return [check for check in checks if check]
