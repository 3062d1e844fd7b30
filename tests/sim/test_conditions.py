"""The trade-condition table's bar rules, as the bar builders will ask them."""

from __future__ import annotations

from mesh.sim import conditions
from mesh.sim.conditions import Eligibility


def test_form_t_updates_volume_but_no_consolidated_price() -> None:
    assert conditions.eligibility(12) == Eligibility(False, False, True)
    assert conditions.eligibility(conditions.FORM_T).updates_volume


def test_an_odd_lot_never_sets_a_price_and_a_sweep_sets_everything() -> None:
    assert conditions.eligibility(37) == Eligibility(False, False, True)
    assert conditions.eligibility(14) == Eligibility(True, True, True)


def test_a_trade_with_several_conditions_takes_the_strictest_of_each_flag() -> None:
    assert conditions.trade_eligibility([14, 37]) == Eligibility(False, False, True)
    assert conditions.trade_eligibility([10]) == Eligibility(
        True, False, True
    )  # derivatively priced
    assert conditions.trade_eligibility([10, 38]) == Eligibility(True, False, False)


def test_a_regular_trade_and_an_unknown_condition_update_everything() -> None:
    assert conditions.trade_eligibility([]) == conditions.EVERYTHING
    assert conditions.eligibility(999) == conditions.EVERYTHING
    assert conditions.condition(999) is None


def test_market_center_rules_differ_where_massive_publishes_them_so() -> None:
    official_close = conditions.condition(15)
    assert official_close is not None and official_close.name == "Market Center Official Close"
    assert conditions.eligibility(15) == Eligibility(False, False, False)
    assert conditions.eligibility(15, market_center=True) == Eligibility(True, True, False)


def test_the_rest_shape_has_massives_fields() -> None:
    body = conditions.TABLE[12].as_massive()
    assert body == {
        "id": 12,
        "type": "sale_condition",
        "name": "Form T",
        "asset_class": "stocks",
        "sip_mapping": {"CTA": "T", "UTP": "T"},
        "update_rules": {
            "consolidated": {
                "updates_high_low": False,
                "updates_open_close": False,
                "updates_volume": True,
            },
            "market_center": {
                "updates_high_low": False,
                "updates_open_close": False,
                "updates_volume": True,
            },
        },
        "data_types": ["trade"],
    }
