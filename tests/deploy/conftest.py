"""The deploy tests that need podman, a built image or Helm run only from their make targets.

`make test-image` and `make test-manifests` (both in `make test`) build what
these tests need and set SESSIONVALIDATOR_DEPLOY_TESTS=1; a bare `pytest`
(make test-service) does not collect them, so nothing here is silently skipped.
The lock check needs nothing and always runs.
"""

from __future__ import annotations

import os

collect_ignore_glob: list[str] = []
if os.environ.get("SESSIONVALIDATOR_DEPLOY_TESTS") != "1":
    collect_ignore_glob = ["test_image.py", "test_compose.py", "test_manifests.py"]
