"""NIP-101e domain: exercises, templates, records, coordinates, resolution, caching."""
