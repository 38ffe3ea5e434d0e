"""The Python SDK (SPEC 6.1). Import from ``chatkeep``; these modules are private."""
