"""The per-matrix working memory that the scan checks against the budget."""

from grokspec.scan.working_memory import working_memory


def test_a_matrix_without_entries_needs_no_memory() -> None:
    for shape in [(0, 16), (16, 0), (0, 0)]:
        assert working_memory(*shape, approx=False) == 0
        assert working_memory(*shape, approx=True) == 0


def test_the_exact_route_counts_the_gram_matrix_and_one_block_of_rows() -> None:
    # A short side of 8192: blocks of 2^22 / 8192 = 512 rows of float64.
    assert working_memory(100_000, 8192, approx=False) == 8 * 8192**2 + 8 * 512 * 8192
    # Wide is read through its transpose: the same count.
    assert working_memory(8192, 100_000, approx=False) == working_memory(100_000, 8192, approx=False)
    # At least 256 rows per block, never more rows than the matrix has.
    assert working_memory(60_000, 60_000, approx=False) == 8 * 60_000**2 + 8 * 256 * 60_000
    assert working_memory(100, 64, approx=False) == 8 * 64**2 + 8 * 100 * 64
