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
        UserCheck(p.user) if p.user else None,
        MaxSizeCheck(p.max_size) if p.max_size else None,
        MaxLayersCheck(p.max_layers) if p.max_layers else None,
        BaseCheck(p.base, open_base) if p.base else None,
        LabelsCheck(p.labels) if p.labels else None,
        SecretsCheck(p.secrets) if p.secrets else None,
        FilesCheck(p.files) if p.files else None,
        ConfigCheck(p.config) if p.config else None,
        PackagesCheck(p.packages) if p.packages else None,
    ]
    return [check for check in checks if check]
