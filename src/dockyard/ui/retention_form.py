"""The retention policy as a form (docs/retention.md): one row per rule (what it retains, of which
repositories and tags), a blank row to add one, a box to remove one, and the schedule. The API checks
the policy; this only turns the form's fields into it. Patterns are separated by spaces: a pattern may
hold commas (`{latest,stable}`).
"""

from __future__ import annotations

from typing import Any

from dockyard.ui.handlers import form_text

MAX_RULES = 15  # the API's limit; the form shows the policy's rules and one blank row
# Each action and the number it takes (None: none), as docs/retention.md names them.
ACTIONS: dict[str, str | None] = {
    "latestPushedK": "count",
    "latestPulledN": "count",
    "nDaysSinceLastPush": "days",
    "nDaysSinceLastPull": "days",
    "always": None,
}


def policy_from_form(form: Any) -> dict[str, Any] | str:
    """The policy the form describes, or what is wrong with it (a number that is not one)."""
    rules: list[dict[str, Any]] = []
    for row in range(MAX_RULES + 1):
        prefix = f"rule-{row}-"
        action = form_text(form, prefix + "action")
        if not action or form.get(prefix + "remove") == "on":
            continue
        rule: dict[str, Any] = {"action": action}
        number = ACTIONS.get(action)
        if number is not None:
            try:
                rule[number] = int(form_text(form, prefix + "number").strip())
            except ValueError:
                return f"Rule {len(rules) + 1}: the {number} is a whole number."
        rule["repositories"] = _selector(form, prefix + "repositories")
        rule["tags"] = {**_selector(form, prefix + "tags"), "untagged": form.get(prefix + "untagged") == "on"}
        if form.get(prefix + "disabled") == "on":
            rule["disabled"] = True
        rules.append(rule)
    return {"rules": rules, "schedule": form_text(form, "schedule").strip() or None}


def _selector(form: Any, name: str) -> dict[str, Any]:
    match = form_text(form, name).split()
    exclude = form_text(form, name + "-exclude").split()
    selector: dict[str, Any] = {"match": match or "**"}
    if exclude:
        selector["exclude"] = exclude
    return selector
