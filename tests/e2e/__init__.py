"""Browser tests: the demo instance seen through headless Chromium (scripts/test-e2e)."""
