"""Provider tests: HTTP behaviour against respx, shaped like the reference fixtures."""
