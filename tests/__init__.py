"""Tests for Cry Detector."""
