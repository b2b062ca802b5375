"""Generated code for ``sessionvalidator.v1`` (do not edit; run ``make proto``)."""
