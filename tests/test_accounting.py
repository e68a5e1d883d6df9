"""The accounting gate (cqia/gates/accounting.py), one function for the three stages that count."""

import pytest


def test_the_accounting_gate_names_every_number():
    from cqia.common.errors import GateFailed
    from cqia.gates.accounting import check_accounting

    assert check_accounting("raw", 5, {"accepted": 3, "rejected": 2}, where="category t") == \
        {"raw": 5, "accepted": 3, "rejected": 2, "success": True}
    with pytest.raises(GateFailed) as exc:
        check_accounting("accepted", 4, {"released": 2, "duplicates": 1}, where="category t", fix="Run it again")
    assert str(exc.value) == "category t: accounting gate failed: 4 accepted but 2 released + 1 duplicates. Run it again"
