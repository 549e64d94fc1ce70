"""Operator-side provisioning: PKI, broker files, bundles."""
