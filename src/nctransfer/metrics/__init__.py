"""Neural-collapse metrics (spec section 1) as pure functions of ``FeatureStats`` or ``(X, y)``."""
