"""Boards written before the replica ceiling was renamed the replica agreement still read:
the section and the attack table's fields under either name."""

from __future__ import annotations

from harness.board.html_page import build_page
from harness.board.replica_agreement import replica_section, with_replica_names
from harness.board.tables import format_attack_table
from tests.harness.board.conftest import make_board


def _old_board() -> dict:
    board = make_board()
    board["replica_ceiling"] = board.pop("replica_agreement")
    for entry in board["attack_ranking"]:
        entry["ceiling_exit_agreement"] = entry.pop("replica_exit_agreement", 0.8)
    return board


def test_an_old_board_reads_under_the_new_names():
    board = _old_board()
    assert replica_section(board) == board["replica_ceiling"]
    assert with_replica_names({"ceiling_fidelity": 0.9}) == {"ceiling_fidelity": 0.9,
                                                             "replica_fidelity": 0.9}
    assert with_replica_names({"replica_fidelity": 0.7, "ceiling_fidelity": 0.9})[
        "replica_fidelity"] == 0.7  # the new name wins
    assert "0.800" in format_attack_table(board)
    assert ">0.800<" in build_page(board, [], [])
