# Shared pytest configuration. Fixtures that several test folders use are registered here.
pytest_plugins = ["tests.controlplane.fixture"]
