"""Domains: everything one task family needs, behind one object (see `Domain`)."""
