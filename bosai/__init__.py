"""The `bosai` command: one entry point for the simulators, the edge agent, the cloud consumer
and the demo that runs them all together."""

__version__ = "0.1.0"
