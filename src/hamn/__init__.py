"""hamn: a self-hosted container registry service modelled on Azure Container Registry."""

__version__ = "0.1.0"
