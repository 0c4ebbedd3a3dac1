"""The test kubelet (pods look Ready without running anything): ``llmops.sandbox.kubelet``."""
from llmops.sandbox.kubelet import MODES, TestKubelet  # noqa: F401 - re-exported
