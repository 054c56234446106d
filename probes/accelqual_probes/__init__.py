"""accelqual_probes: the checks of the AI accelerator card standard, written once in torch.

The package knows nothing of Kubernetes. The operator imports only its torch-free
contract modules (`schema`, `profiles`, `catalog`, `thresholds`); everything that
touches torch is imported lazily by the runner.
"""

__version__ = "0.1.0"
