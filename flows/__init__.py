"""Prefect flows of drlrec: training (flows.training_flow), deployments (flows.deploy), monitoring."""
