"""Local fakes of third-party endpoints: real HTTP servers that check requests
the way the real service does and record what they received."""
