"""Everything that is not blob bytes: one schema, versioned migrations, one store."""
