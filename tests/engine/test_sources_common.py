"""Shared source helpers: chunk sizes and the chunk assembler's time base."""

from __future__ import annotations

import pytest

from custom_components.cry_detector.engine.sources import ChunkAssembler, chunk_size


def test_chunk_size_is_at_least_one_sample() -> None:
    assert chunk_size(8000, 0.1) == 800
    assert chunk_size(16000, 1 / 16000) == 1
    with pytest.raises(ValueError, match="sample_rate must be positive"):
        chunk_size(0, 0.1)
    with pytest.raises(ValueError, match="shorter than one sample"):
        chunk_size(8000, 0.00001)


def test_assembler_needs_a_time_base_before_stamping_or_shifting() -> None:
    assembler = ChunkAssembler(8000, 800)
    assert not assembler.has_base
    with pytest.raises(RuntimeError, match="no time base"):
        _ = assembler.next_start
    with pytest.raises(RuntimeError, match="no time base"):
        assembler.shift(1.0)
    assembler.rebase(100.0)
    assembler.shift(0.5)
    assert assembler.has_base and assembler.next_start == pytest.approx(100.5)
