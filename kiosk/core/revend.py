"""The re-vend rule: when may a line whose tx the board does not know be vended again?

Owns: the verdict on an OUTCOME answer of UNKNOWN_TX. Beside `kiosk.core.sale`, which acts on
the verdict (NOT_ACCEPTED: try the line again with a new tx; UNKNOWN_TX: refund, never vend).

Pure: the shell (kiosk.controller.dispense) asks the board about the tx and, only when
`needs_proof` says so, about the anchor (the last tx of ours the board recorded before this tx
was committed; kept per board in the store). Never: calls a tx "never accepted" without proof.
"""

from __future__ import annotations

from kiosk.core.sale import VendOutcome

__all__ = ["needs_proof", "queried_verdict"]


def needs_proof(answer: VendOutcome) -> bool:
    """Does this OUTCOME answer need the anchor to be understood?"""
    return answer is VendOutcome.UNKNOWN_TX


def queried_verdict(answer: VendOutcome, anchor_answer: VendOutcome | None) -> VendOutcome:
    """The board answered `answer` for our tx, and `anchor_answer` for the anchor (None: no
    anchor, or the board could not be asked). UNKNOWN_TX is "never accepted" only if the board
    still knows the anchor: outcome memories drop oldest first, so a memory that still holds
    the anchor holds everything after it, our tx included, had the board ever accepted it."""
    if (
        needs_proof(answer)
        and anchor_answer is not None
        and anchor_answer is not VendOutcome.UNKNOWN_TX
    ):
        return VendOutcome.NOT_ACCEPTED
    return answer
