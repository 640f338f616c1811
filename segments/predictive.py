"""Ready-made predictive segments: rule segments over the profiles' predictions, for operators who
would rather not write the rule (docs/segments.md, "Predictive segments").

Each template gives a name, a description and a rule; what it creates is an ordinary rule segment
(editable, audited, refreshed on every pipeline run after the profiles step has predicted), so
there is nothing here the rule language cannot say.
"""

from __future__ import annotations

from dataclasses import dataclass

CHURN_RISK_AT_LEAST = 0.7
TOP_VALUE_PERCENT = 10
CATEGORY_AFFINITY_AT_LEAST = 0.4


@dataclass(frozen=True)
class PredictiveTemplate:
    key: str
    title: str  # how the template is offered
    name: str  # the segment's name ({category} filled in)
    description: str
    needs_category: bool = False

    def rule(self, category: str | None = None) -> dict:
        if self.key == "churn":
            # Among customers who bought: a customer who never ordered has nothing to churn from.
            return {
                "all": [
                    {"field": "churn_risk", "op": ">=", "value": CHURN_RISK_AT_LEAST},
                    {"field": "orders_total", "op": ">=", "value": 1},
                ]
            }
        if self.key == "value":
            return {"top": {"field": "predicted_value", "percent": TOP_VALUE_PERCENT}}
        if not category:
            raise ValueError(f"the template {self.key!r} needs a category")
        return {"affinity": {"category": category, "op": ">=", "value": CATEGORY_AFFINITY_AT_LEAST}}

    def fill(self, category: str | None = None) -> dict:
        """The segment's name, description and rule for this template (and category)."""
        if self.needs_category and not category:
            raise ValueError(f"the template {self.key!r} needs a category")
        return {
            "name": self.name.format(category=category or "")[:120],
            "description": self.description.format(category=category or ""),
            "rule": self.rule(category),
        }


TEMPLATES: dict[str, PredictiveTemplate] = {
    t.key: t
    for t in (
        PredictiveTemplate(
            "churn",
            "Likely to churn",
            "Likely to churn",
            f"Customers who bought and have at least a {CHURN_RISK_AT_LEAST:.0%} chance of not ordering "
            "in the prediction horizon: a win-back audience.",
        ),
        PredictiveTemplate(
            "value",
            "High predicted value",
            "High predicted value",
            f"The top {TOP_VALUE_PERCENT} % of customers by predicted spend in the prediction horizon "
            "(ties at the threshold included).",
        ),
        PredictiveTemplate(
            "category",
            "Likely to buy a category",
            "Likely to buy {category}",
            f"Customers with at least a {CATEGORY_AFFINITY_AT_LEAST:.0%} predicted chance of buying from "
            "{category} in the prediction horizon.",
            needs_category=True,
        ),
    )
}
