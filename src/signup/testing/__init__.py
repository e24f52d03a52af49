"""Test helpers shipped with the package: local stand-ins for outside services."""
