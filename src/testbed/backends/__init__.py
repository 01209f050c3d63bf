"""Django database backends provided by testbed."""
